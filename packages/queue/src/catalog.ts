/**
 * The queue catalog: every job Retort enqueues, its payload and its delivery policy. The producer and
 * the worker factory both read it, so the two cannot disagree.
 */

/** A run to train. Payloads carry ids only: the spec stays in Postgres, secrets stay out of Redis. */
export interface RunJobPayload {
  runId: string;
  /** Which of the run's dispatches this entry is; a worker claims the run only for the current one. */
  dispatch: number;
}

export const RUN_JOB = {
  name: 'run',
  /** One queue per resource pool; workers of a pool consume only their queue. */
  queueName: (pool: string) => `runs-${pool}`,
  /** One entry per dispatch: the run id and the dispatch number. */
  jobId: (runId: string, dispatch: number) => `${runId}.${dispatch}`,
  /** A retry after a crash waits 5 s, 10 s, 20 s, … (Postgres counts the retries, not BullMQ). */
  retryDelayMs: (retries: number) => Math.min(5 * 60_000, 5_000 * 2 ** Math.max(0, retries - 1)),
  /** A worker renews its lock every lockDuration/2; a worker silent for this long has lost the job. */
  lockDurationMs: 30_000,
  /** Stalled jobs go back to the queue; Postgres bounds how often a run may lose its worker. */
  maxStalledCount: 100,
} as const;

export function isRunJobPayload(x: unknown): x is RunJobPayload {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as RunJobPayload).runId === 'string' &&
    Number.isInteger((x as RunJobPayload).dispatch)
  );
}

/** Spec priority 0–100 (higher first) to BullMQ's 1–101 (lower first). */
export function bullPriority(priority: number): number {
  return 101 - Math.max(0, Math.min(100, Math.round(priority)));
}

/** The pub/sub channel that carries control signals (cancel) to workers. */
export const controlChannel = (prefix: string) => `${prefix}:control`;

export type ControlMessage = { type: 'cancel' | 'pause'; runId: string };

/** BullMQ states in which a queue entry will still be (or is being) worked on. */
export const LIVE_JOB_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'waiting-children'] as const;
