import { hostname } from 'node:os';
import { createDb, heartbeat, markWorkerStopped, registerWorker } from '@retort/db';
import { createRedis, createRunWorker, RunProducer, subscribeControl } from '@retort/queue';
import { pino } from 'pino';
import { loadEnv, type WorkerEnv } from './env.js';
import { Reconciler } from './reconciler.js';
import { RunService } from './run-service.js';
import { WarmProcesses } from './training-process.js';

let env: WorkerEnv;
try {
  env = loadEnv();
} catch (e) {
  console.error(`retort-worker: bad configuration: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
}

const log = pino({ name: 'retort-worker', level: env.LOG_LEVEL });
const db = createDb(env.DATABASE_URL, {
  max: 4,
  applicationName: `retort-worker ${env.workerId}`,
  statementTimeoutMs: env.RETORT_PG_STATEMENT_TIMEOUT_MS,
  lockTimeoutMs: env.RETORT_PG_LOCK_TIMEOUT_MS,
});
const redis = createRedis(env.REDIS_URL, `retort-worker-control ${env.workerId}`);
const producer = new RunProducer(redis, env.RETORT_QUEUE_PREFIX);

// Which backend the training processes get is learned from the first spare process, started now.
const processes = new WarmProcesses(env.RETORT_BACKEND);
const backend = await processes.prewarm();
log.info({ backend: backend.name, device: backend.device, skipped: backend.skipped }, 'compute backend');
await registerWorker(db, {
  id: env.workerId,
  pool: env.RETORT_POOL,
  backend: backend.name,
  device: backend.device,
  hostname: hostname(),
  pid: process.pid,
});

const service = new RunService({
  db,
  producer,
  log,
  worker: { id: env.workerId, backend: backend.name, device: backend.device },
  policy: {
    dataRoots: env.dataRoots,
    allowedHosts: env.allowedHosts,
    allowPrivateAddresses: env.RETORT_ALLOW_PRIVATE_ADDRESSES,
  },
  maxReadBytes: env.RETORT_MAX_DOWNLOAD_MB * 2 ** 20,
  backend: env.RETORT_BACKEND,
  teacherCacheMaxBytes: env.RETORT_TEACHER_CACHE_MAX_MB * 2 ** 20,
  processes,
  metricsFlushMs: env.RETORT_METRICS_FLUSH_MS,
  progressWriteMs: env.RETORT_PROGRESS_WRITE_MS,
  shutdownGraceMs: env.RETORT_SHUTDOWN_GRACE_MS,
});

const unsubscribe = await subscribeControl(redis, env.RETORT_QUEUE_PREFIX, (m) =>
  service.signal(m.type, m.runId),
);

const worker = createRunWorker({
  redisUrl: env.REDIS_URL,
  prefix: env.RETORT_QUEUE_PREFIX,
  pool: env.RETORT_POOL,
  lockDurationMs: env.RETORT_LOCK_MS,
  handler: (payload) => service.execute(payload),
});
worker.on('failed', (job, err) => log.error({ runId: job?.data.runId, err: err.message }, 'run job failed'));
// Redis trouble repeats itself (a lock that cannot be renewed fails every half lock period): say it once a minute.
const lastSaid = new Map<string, number>();
worker.on('error', (err) => {
  if (Date.now() - (lastSaid.get(err.message) ?? 0) < 60_000) return;
  lastSaid.set(err.message, Date.now());
  log.warn({ err: err.message }, 'queue error');
});

const beat = setInterval(() => {
  heartbeat(db, env.workerId, service.currentRunId).catch((e) =>
    log.warn({ err: String(e) }, 'heartbeat failed'),
  );
}, env.RETORT_HEARTBEAT_MS);

const reconciler = new Reconciler({ db, producer, workerStaleMs: env.RETORT_WORKER_STALE_MS, log });
let reconciling = false;
const reconcile = setInterval(() => {
  if (reconciling) return;
  reconciling = true;
  reconciler
    .runOnce()
    .catch((e) => log.warn({ err: String(e) }, 'reconciler pass failed'))
    .finally(() => {
      reconciling = false;
    });
}, env.RETORT_RECONCILE_MS);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info(
    { signal, runId: service.currentRunId },
    'shutting down; the run in progress checkpoints and goes back to the queue',
  );
  clearInterval(beat);
  clearInterval(reconcile);
  service.stop();
  await worker.close().catch(() => {});
  processes.dispose();
  await unsubscribe();
  await markWorkerStopped(db, env.workerId).catch(() => {});
  await producer.close().catch(() => {});
  redis.disconnect();
  await db.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

void worker.run();
log.info({ worker: env.workerId, pool: env.RETORT_POOL }, 'worker ready');
