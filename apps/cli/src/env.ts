/** The CLI's configuration from the environment; flags override it. */
export interface CliEnv {
  /** RETORT_URL: the API's base URL. Default http://127.0.0.1:8080. */
  url: string;
  /** RETORT_API_KEY: the bearer key. */
  apiKey: string | undefined;
  /** RETORT_DATA_ROOTS: folders local mode may read (colon-separated). Default /usr/share/datasets and the current folder. */
  dataRoots: string[];
}

export function loadEnv(env: NodeJS.ProcessEnv = process.env): CliEnv {
  return {
    url: env.RETORT_URL ?? 'http://127.0.0.1:8080',
    apiKey: env.RETORT_API_KEY,
    dataRoots: (env.RETORT_DATA_ROOTS ?? `/usr/share/datasets:${process.cwd()}`).split(':').filter(Boolean),
  };
}
