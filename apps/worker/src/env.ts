import { hostname } from 'node:os';
import envSchema from 'env-schema';
import Type, { type Static } from 'typebox';

/** The worker's configuration: every variable it reads, with its default. Parsed once at start. */
const Schema = Type.Object({
  /** Postgres, where runs, metrics and artifacts live. */
  DATABASE_URL: Type.String({ minLength: 1 }),
  /** Redis, for the run queues and control signals. */
  REDIS_URL: Type.String({ minLength: 1 }),
  /** The resource pool this worker serves (it consumes the queue runs-<pool>). */
  RETORT_POOL: Type.String({ default: 'default', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
  /** Prefix of every Redis key (lets several deployments, or test files, share one Redis). */
  RETORT_QUEUE_PREFIX: Type.String({ default: 'retort' }),
  /** Colon-separated folders that file:// URIs may point into. */
  RETORT_DATA_ROOTS: Type.String({ default: '/usr/share/datasets:/data' }),
  /** Comma-separated hosts that http(s):// URIs may name; empty refuses all. */
  RETORT_ALLOWED_HOSTS: Type.String({ default: '' }),
  /** Whether allowed hosts may resolve to loopback, private or link-local addresses. */
  RETORT_ALLOW_PRIVATE_ADDRESSES: Type.Boolean({ default: false }),
  /** The largest file a run may read, in MiB: a download over http(s) or a file under the data roots. */
  RETORT_MAX_DOWNLOAD_MB: Type.Integer({ default: 2048, minimum: 1 }),
  /** Postgres cancels a worker statement that runs longer than this (ms): checkpoints and artifacts are written in chunks well under it. */
  RETORT_PG_STATEMENT_TIMEOUT_MS: Type.Integer({ default: 120_000, minimum: 1000 }),
  /** A statement waits at most this long (ms) for a row lock; the write is then retried. */
  RETORT_PG_LOCK_TIMEOUT_MS: Type.Integer({ default: 10_000, minimum: 10 }),
  /** Force a compute backend (tensorflow, wasm, cpu); by default the best one installed. */
  RETORT_BACKEND: Type.Optional(Type.Enum(['tensorflow', 'wasm', 'cpu'])),
  /** This worker's id in /v1/workers; defaults to <hostname>-<pid>. */
  RETORT_WORKER_ID: Type.Optional(Type.String({ minLength: 1 })),
  /** How often the worker reports itself alive, in ms. */
  RETORT_HEARTBEAT_MS: Type.Integer({ default: 5000, minimum: 100 }),
  /** A worker renews its queue lock every half of this (ms); one silent this long has lost its run. */
  RETORT_LOCK_MS: Type.Integer({ default: 30_000, minimum: 500 }),
  /** How often (ms) the reconciler compares Postgres with the queues. */
  RETORT_RECONCILE_MS: Type.Integer({ default: 15_000, minimum: 100 }),
  /** A worker that has not heartbeaten for this long (ms) counts as gone. */
  RETORT_WORKER_STALE_MS: Type.Integer({ default: 30_000, minimum: 200 }),
  /** On SIGTERM, how long (ms) the run in progress has to checkpoint before it is killed. */
  RETORT_SHUTDOWN_GRACE_MS: Type.Integer({ default: 30_000, minimum: 0 }),
  /** A run's progress (epoch, step) is written to Postgres at most this often, in ms. */
  RETORT_PROGRESS_WRITE_MS: Type.Integer({ default: 1000, minimum: 10 }),
  /** Metric points are written to Postgres at least this often, in ms (and at every 1000 points). */
  RETORT_METRICS_FLUSH_MS: Type.Integer({ default: 1000, minimum: 10 }),
  /** The most memory (MiB) a run's teacher-output cache may take; above it the teacher runs on every batch. */
  RETORT_TEACHER_CACHE_MAX_MB: Type.Integer({ default: 1024, minimum: 0 }),
  /** Log level: fatal, error, warn, info, debug. */
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug'], { default: 'info' }),
});

export type WorkerEnv = Static<typeof Schema> & {
  workerId: string;
  dataRoots: string[];
  allowedHosts: string[];
};

export function loadEnv(source: NodeJS.ProcessEnv = process.env): WorkerEnv {
  const env = envSchema<Static<typeof Schema>>({ schema: Schema, data: source, dotenv: false });
  return {
    ...env,
    workerId: env.RETORT_WORKER_ID ?? `${hostname()}-${process.pid}`,
    dataRoots: env.RETORT_DATA_ROOTS.split(':').filter(Boolean),
    allowedHosts: env.RETORT_ALLOWED_HOSTS.split(',')
      .map((h) => h.trim())
      .filter(Boolean),
  };
}
