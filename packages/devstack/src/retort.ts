import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './processes.js';

/** The repository root (packages/devstack/{src,dist} → ../../..). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const API_MAIN = path.join(REPO_ROOT, 'apps/api/dist/server.js');
const WORKER_MAIN = path.join(REPO_ROOT, 'apps/worker/dist/main.js');

export interface RetortStackOptions {
  databaseUrl: string;
  redisUrl: string;
  /** Redis key prefix; give each test file its own. Default `retort`. */
  queuePrefix?: string;
  dataRoots: string[];
  /** Worker processes to start. Default 1. */
  workers?: number;
  /** Where api.log and worker-N.log go; without it, output is discarded. */
  logDir?: string;
  adminKey?: string;
  /** More environment for both apps. */
  env?: Record<string, string>;
}

export interface RetortStack {
  baseUrl: string;
  adminKey: string;
  api: ChildProcess;
  workers: ChildProcess[];
  /** Starts one more worker (with more environment, e.g. another RETORT_POOL) and waits until it reports for duty. */
  addWorker(env?: Record<string, string>): Promise<ChildProcess>;
  stop(): Promise<void>;
}

function stopProcess(p: ChildProcess, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/**
 * Starts Retort as it runs in production, one API process and N worker processes from the built
 * apps, against the given Postgres and Redis (already migrated). Used by the demo, the benchmarks
 * and the end-to-end tests.
 */
export async function startRetort(o: RetortStackOptions): Promise<RetortStack> {
  const port = await freePort();
  const adminKey = o.adminKey ?? `rk_admin_${randomBytes(16).toString('hex')}`;
  const baseUrl = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    DATABASE_URL: o.databaseUrl,
    REDIS_URL: o.redisUrl,
    RETORT_QUEUE_PREFIX: o.queuePrefix ?? 'retort',
    RETORT_DATA_ROOTS: o.dataRoots.join(':'),
    RETORT_ADMIN_KEY: adminKey,
    HOST: '127.0.0.1',
    PORT: String(port),
    RETORT_HEARTBEAT_MS: '1000',
    ...o.env,
  };
  if (o.logDir) mkdirSync(o.logDir, { recursive: true });
  const out = (name: string) => (o.logDir ? openSync(path.join(o.logDir, name), 'a') : 'ignore');
  const start = (main: string, log: string, more: Record<string, string> = {}) =>
    spawn(process.execPath, [main], { env: { ...env, ...more }, stdio: ['ignore', out(log), out(log)] });

  const api = start(API_MAIN, 'api.log');
  const workers: ChildProcess[] = [];
  const all = () => [api, ...workers];
  const stop = async () => {
    await Promise.all(workers.map((w) => stopProcess(w)));
    await stopProcess(api);
  };
  const workerIds = async (): Promise<string[]> => {
    const res = await fetch(`${baseUrl}/v1/workers`, { headers: { authorization: `Bearer ${adminKey}` } });
    return res.ok ? ((await res.json()) as { id: string }[]).map((w) => w.id) : [];
  };
  const addWorker = async (more: Record<string, string> = {}) => {
    const w = start(WORKER_MAIN, `worker-${workers.length + 1}.log`, more);
    workers.push(w);
    // A worker's default id ends with its pid.
    await waitFor(
      `worker ${w.pid} to register`,
      async () => {
        if (w.exitCode !== null)
          throw new Error(`worker exited with code ${w.exitCode}${o.logDir ? ` (see ${o.logDir})` : ''}`);
        return (await workerIds()).some((id) => id.endsWith(`-${w.pid}`));
      },
      60_000,
    );
    return w;
  };
  try {
    await waitFor('the API to answer /readyz', async () => {
      if (api.exitCode !== null)
        throw new Error(
          `the API exited with code ${api.exitCode}${o.logDir ? ` (see ${o.logDir}/api.log)` : ''}`,
        );
      return (await fetch(`${baseUrl}/readyz`)).ok;
    });
    for (let i = 0; i < (o.workers ?? 1); i++) await addWorker();
  } catch (e) {
    await Promise.all(all().map((p) => stopProcess(p, 2000)));
    throw e;
  }
  return { baseUrl, adminKey, api, workers, addWorker, stop };
}
