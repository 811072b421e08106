import {
  type ArtifactResource,
  type ErrorDetail,
  type MetricSeries,
  type RunResource,
  type RunSpecInput,
  type RunStatus,
  TerminalStatuses,
} from '@retort/spec';

/** An error answer of the API: `{ code, message, details? }` and the HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: ErrorDetail[],
  ) {
    super(
      `${status} ${code}: ${message}${details?.length ? `\n${details.map((d) => `  ${d.path}: ${d.message}`).join('\n')}` : ''}`,
    );
    this.name = 'ApiError';
  }
}

export interface SubmitOptions {
  idempotencyKey?: string;
  dryRun?: boolean;
}

/** The run as the API returns it. */
export type Run = RunResource;

export class RetortClient {
  constructor(
    readonly baseUrl: string,
    private readonly apiKey: string,
  ) {}

  private async request<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: T }> {
    const res = await fetch(new URL(path, this.baseUrl), {
      method,
      headers: {
        authorization: `Bearer ${this.apiKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : undefined;
    if (!res.ok) {
      const e = parsed as { code?: string; message?: string; details?: ErrorDetail[] } | undefined;
      throw new ApiError(res.status, e?.code ?? 'UNKNOWN', e?.message ?? res.statusText, e?.details);
    }
    return { status: res.status, body: parsed as T };
  }

  /** Submits a spec; `created` is false when an idempotency key returned an earlier run. */
  async submit(
    spec: RunSpecInput | Record<string, unknown>,
    opts: SubmitOptions = {},
  ): Promise<{ run: Run; created: boolean }> {
    const headers: Record<string, string> = opts.idempotencyKey
      ? { 'idempotency-key': opts.idempotencyKey }
      : {};
    const r = await this.request<Run>('POST', `/v1/runs${opts.dryRun ? '?dryRun=true' : ''}`, spec, headers);
    return { run: r.body, created: r.status === 201 };
  }

  async run(id: string): Promise<Run> {
    return (await this.request<Run>('GET', `/v1/runs/${id}`)).body;
  }

  async list(
    q: { status?: RunStatus[]; tags?: Record<string, string>; limit?: number; cursor?: string } = {},
  ) {
    const p = new URLSearchParams();
    if (q.status?.length) p.set('status', q.status.join(','));
    for (const [k, v] of Object.entries(q.tags ?? {})) p.append('tag', `${k}:${v}`);
    if (q.limit) p.set('limit', String(q.limit));
    if (q.cursor) p.set('cursor', q.cursor);
    return (await this.request<{ items: Run[]; nextCursor: string | null }>('GET', `/v1/runs?${p}`)).body;
  }

  async cancel(id: string): Promise<Run> {
    return (await this.request<Run>('POST', `/v1/runs/${id}/cancel`)).body;
  }

  async metrics(
    id: string,
    q: { names?: string[]; fromStep?: number; maxPoints?: number } = {},
  ): Promise<MetricSeries> {
    const p = new URLSearchParams();
    if (q.names?.length) p.set('name', q.names.join(','));
    if (q.fromStep !== undefined) p.set('fromStep', String(q.fromStep));
    if (q.maxPoints !== undefined) p.set('maxPoints', String(q.maxPoints));
    return (await this.request<MetricSeries>('GET', `/v1/runs/${id}/metrics?${p}`)).body;
  }

  async artifacts(id: string): Promise<ArtifactResource[]> {
    return (await this.request<ArtifactResource[]>('GET', `/v1/runs/${id}/artifacts`)).body;
  }

  /** The bytes of an artifact, checked against the sha256 the server announces. */
  async download(artifactId: string): Promise<Uint8Array> {
    const res = await fetch(new URL(`/v1/artifacts/${artifactId}/content`, this.baseUrl), {
      headers: { authorization: `Bearer ${this.apiKey}` },
    });
    if (!res.ok) throw new ApiError(res.status, 'DOWNLOAD_FAILED', await res.text());
    return new Uint8Array(await res.arrayBuffer());
  }

  /** URL of the student's model.json, for `tf.loadLayersModel(url, { requestInit: { headers } })`. */
  modelUrl(id: string): string {
    return new URL(`/v1/runs/${id}/model/model.json`, this.baseUrl).toString();
  }

  authHeaders(): Record<string, string> {
    return { authorization: `Bearer ${this.apiKey}` };
  }

  /**
   * Polls until the run ends (succeeded, failed or canceled), calling `onUpdate` at each poll.
   * Rejects after `timeoutMs`.
   */
  async wait(
    id: string,
    opts: { intervalMs?: number; timeoutMs?: number; onUpdate?: (r: Run) => void } = {},
  ): Promise<Run> {
    const deadline = Date.now() + (opts.timeoutMs ?? 24 * 3600_000);
    for (;;) {
      const r = await this.run(id);
      opts.onUpdate?.(r);
      if (TerminalStatuses.includes(r.status)) return r;
      if (Date.now() > deadline) throw new Error(`run ${id} still ${r.status} after ${opts.timeoutMs} ms`);
      await new Promise((res) => setTimeout(res, opts.intervalMs ?? 1000));
    }
  }
}
