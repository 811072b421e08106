import { type Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  type ControlMessage,
  controlChannel,
  isRunJobPayload,
  RUN_JOB,
  type RunJobPayload,
} from './catalog.js';
import { createRedis } from './connection.js';

export type RunJobHandler = (payload: RunJobPayload, job: Job<RunJobPayload>) => Promise<void>;

/**
 * A BullMQ worker for one pool's run queue, taking one run at a time (a worker drives one GPU).
 * The handler stays thin: it parses the payload and calls the run service.
 */
export function createRunWorker(opts: {
  redisUrl: string;
  prefix: string;
  pool: string;
  handler: RunJobHandler;
  /** Default RUN_JOB.lockDurationMs; stalled jobs are looked for as often. */
  lockDurationMs?: number;
}): Worker<RunJobPayload> {
  const lockDuration = opts.lockDurationMs ?? RUN_JOB.lockDurationMs;
  return new Worker<RunJobPayload>(
    RUN_JOB.queueName(opts.pool),
    async (job) => {
      if (!isRunJobPayload(job.data)) throw new Error(`job ${job.id} has no run id and dispatch`);
      await opts.handler(job.data, job);
    },
    {
      connection: createRedis(opts.redisUrl, `retort-worker-${opts.pool}`),
      prefix: opts.prefix,
      concurrency: 1,
      lockDuration,
      stalledInterval: lockDuration,
      maxStalledCount: RUN_JOB.maxStalledCount,
      autorun: false,
    },
  );
}

/** Subscribes to control signals; returns a function that unsubscribes. */
export async function subscribeControl(
  redis: Redis,
  prefix: string,
  onMessage: (m: ControlMessage) => void,
): Promise<() => Promise<void>> {
  const sub = redis.duplicate();
  sub.on('error', () => {});
  const channel = controlChannel(prefix);
  await sub.subscribe(channel);
  sub.on('message', (ch, raw) => {
    if (ch !== channel) return;
    try {
      const m = JSON.parse(raw) as ControlMessage;
      if ((m?.type === 'cancel' || m?.type === 'pause') && typeof m.runId === 'string') onMessage(m);
    } catch {
      // not ours
    }
  });
  return async () => {
    await sub.unsubscribe(channel).catch(() => {});
    sub.disconnect();
  };
}
