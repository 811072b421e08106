import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { bullPriority, type ControlMessage, controlChannel, RUN_JOB, type RunJobPayload } from './catalog.js';

export interface EnqueueRun {
  runId: string;
  dispatch: number;
  pool: string;
  priority: number;
  /** Wait this long before the entry can be taken (retry backoff). */
  delayMs?: number;
}

/** Enqueues runs, inspects their entries and sends control signals. */
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
      // Connection errors surface through the calls that fail; without a listener BullMQ prints each one.
      q.on('error', () => {});
      this.queues.set(pool, q);
    }
    return q;
  }

  /** One entry per dispatch (its id names both), so enqueueing a dispatch twice never makes two jobs. */
  async enqueue(r: EnqueueRun): Promise<void> {
    await this.queue(r.pool).add(
      RUN_JOB.name,
      { runId: r.runId, dispatch: r.dispatch },
      {
        jobId: RUN_JOB.jobId(r.runId, r.dispatch),
        priority: bullPriority(r.priority),
        attempts: 1,
        ...(r.delayMs ? { delay: r.delayMs } : {}),
        removeOnComplete: true,
        removeOnFail: { age: 7 * 24 * 3600 },
      },
    );
  }

  /** Removes a waiting entry; false when it is not there or a worker holds it. */
  async removeQueued(pool: string, runId: string, dispatch: number): Promise<boolean> {
    const job = await this.queue(pool).getJob(RUN_JOB.jobId(runId, dispatch));
    if (!job) return false;
    try {
      await job.remove();
      return true;
    } catch {
      return false; // locked by a worker: its claim will find the run canceled or paused
    }
  }

  /** The BullMQ state of a dispatch's entry, or `missing`. */
  async jobState(pool: string, runId: string, dispatch: number): Promise<string> {
    const job = await this.queue(pool).getJob(RUN_JOB.jobId(runId, dispatch));
    return job ? await job.getState() : 'missing';
  }

  async sendControl(msg: ControlMessage): Promise<void> {
    await this.redis.publish(controlChannel(this.prefix), JSON.stringify(msg));
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
