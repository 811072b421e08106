import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { bullPriority, type ControlMessage, controlChannel, RUN_JOB, type RunJobPayload } from './catalog.js';

export interface EnqueueRun {
  runId: string;
  pool: string;
  priority: number;
  maxAttempts: number;
}

/** Enqueues runs and sends control signals. One instance per API process. */
export class RunProducer {
  private readonly queues = new Map<string, Queue<RunJobPayload>>();

  constructor(
    private readonly redis: Redis,
    readonly prefix: string,
  ) {}

  private queue(pool: string): Queue<RunJobPayload> {
    let q = this.queues.get(pool);
    if (!q) {
      q = new Queue<RunJobPayload>(RUN_JOB.queueName(pool), { connection: this.redis, prefix: this.prefix });
      this.queues.set(pool, q);
    }
    return q;
  }

  /** The job id is the run id, so enqueueing a run twice never makes two jobs. */
  async enqueue(r: EnqueueRun): Promise<void> {
    await this.queue(r.pool).add(
      RUN_JOB.name,
      { runId: r.runId },
      {
        jobId: r.runId,
        priority: bullPriority(r.priority),
        attempts: r.maxAttempts,
        backoff: RUN_JOB.backoff,
        removeOnComplete: true,
        removeOnFail: { age: 7 * 24 * 3600 },
      },
    );
  }

  /** Removes a queued run's job; false when it is not waiting (already taken, or gone). */
  async removeQueued(pool: string, runId: string): Promise<boolean> {
    const job = await this.queue(pool).getJob(runId);
    if (!job) return false;
    try {
      await job.remove();
      return true;
    } catch {
      return false; // locked by a worker: it will see the run is canceled when it claims it
    }
  }

  async sendControl(msg: ControlMessage): Promise<void> {
    await this.redis.publish(controlChannel(this.prefix), JSON.stringify(msg));
  }

  async depth(pool: string): Promise<number> {
    return this.queue(pool).count();
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
