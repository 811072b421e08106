import { hostname } from 'node:os';
import { createDb, heartbeat, markWorkerStopped, registerWorker } from '@retort/db';
import { createRedis, createRunWorker, subscribeControl } from '@retort/queue';
import { pino } from 'pino';
import { loadEnv, type WorkerEnv } from './env.js';
import { RetryableRunError, RunService } from './run-service.js';
import { WarmProcesses } from './training-process.js';

let env: WorkerEnv;
try {
  env = loadEnv();
} catch (e) {
  console.error(`retort-worker: bad configuration: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
}

const log = pino({ name: 'retort-worker', level: env.LOG_LEVEL });
const db = createDb(env.DATABASE_URL, { max: 4, applicationName: `retort-worker ${env.workerId}` });
const redis = createRedis(env.REDIS_URL, `retort-worker-control ${env.workerId}`);

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
  log,
  worker: { id: env.workerId, backend: backend.name, device: backend.device },
  policy: { dataRoots: env.dataRoots, allowedHosts: env.allowedHosts },
  backend: env.RETORT_BACKEND,
  processes,
  metricsFlushMs: env.RETORT_METRICS_FLUSH_MS,
});

const unsubscribe = await subscribeControl(redis, env.RETORT_QUEUE_PREFIX, (m) => service.cancel(m.runId));

const worker = createRunWorker({
  redisUrl: env.REDIS_URL,
  prefix: env.RETORT_QUEUE_PREFIX,
  pool: env.RETORT_POOL,
  handler: (payload, job) =>
    service.execute(payload.runId, { attemptsMade: job.attemptsMade, maxAttempts: job.opts.attempts ?? 1 }),
});
worker.on('failed', (job, err) => {
  if (!(err instanceof RetryableRunError))
    log.error({ runId: job?.data.runId, err: err.message }, 'run job failed');
});
worker.on('error', (err) => log.error({ err: err.message }, 'queue error'));

const beat = setInterval(() => {
  heartbeat(db, env.workerId, service.currentRunId).catch((e) =>
    log.warn({ err: String(e) }, 'heartbeat failed'),
  );
}, env.RETORT_HEARTBEAT_MS);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info(
    { signal, runId: service.currentRunId },
    'shutting down; the run in progress goes back to the queue',
  );
  clearInterval(beat);
  service.stop();
  processes.dispose();
  await worker.close().catch(() => {});
  await unsubscribe();
  await markWorkerStopped(db, env.workerId).catch(() => {});
  redis.disconnect();
  await db.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

void worker.run();
log.info({ worker: env.workerId, pool: env.RETORT_POOL }, 'worker ready');
