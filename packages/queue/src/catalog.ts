/**
 * The queue catalog: every job Retort enqueues, its payload and its delivery policy. The producer and
 * the worker factory both read it, so the two cannot disagree.
 */

/** A run to train. Payloads carry ids only: the spec stays in Postgres, secrets stay out of Redis. */
export interface RunJobPayload {
  runId: string;
}

export const RUN_JOB = {
  name: 'run',
  /** One queue per resource pool; workers of a pool consume only their queue. */
  queueName: (pool: string) => `runs-${pool}`,
  /** Retries after a lost worker or a crash wait 5 s, 10 s, 20 s, … */
  backoff: { type: 'exponential', delay: 5_000 } as const,
  /** A worker renews its lock every lockDuration/2; a worker silent for this long has lost the job. */
  lockDurationMs: 30_000,
  /** A job found stalled (lock expired) this many times is failed, not retried again by BullMQ. */
  maxStalledCount: 3,
} as const;

export function isRunJobPayload(x: unknown): x is RunJobPayload {
  return typeof x === 'object' && x !== null && typeof (x as RunJobPayload).runId === 'string';
}

/** Spec priority 0–100 (higher first) to BullMQ's 1–101 (lower first). */
export function bullPriority(priority: number): number {
  return 101 - Math.max(0, Math.min(100, Math.round(priority)));
}

/** The pub/sub channel that carries control signals (cancel) to workers. */
export const controlChannel = (prefix: string) => `${prefix}:control`;

export type ControlMessage = { type: 'cancel'; runId: string };
