import { type Db, FencedOutError, type MetricPointInput, writeMetrics } from '@retort/db';

/**
 * Buffers a run's metric points and writes them in batches: when `maxPoints` have gathered or
 * `intervalMs` has passed, never once per step. A failed write keeps its points for the next try,
 * so a Postgres hiccup loses nothing; a fenced-out write (the run has moved on) drops them.
 */
export class MetricWriter {
  private buffer: MetricPointInput[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  fenced: FencedOutError | undefined;

  constructor(
    private readonly db: Db,
    private readonly runId: string,
    private readonly attempt: number,
    private readonly opts: { intervalMs: number; maxPoints?: number; onError: (e: unknown) => void },
  ) {}

  add(points: MetricPointInput[]): void {
    if (this.fenced) return;
    this.buffer.push(...points);
    if (this.buffer.length >= (this.opts.maxPoints ?? 1000)) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.opts.intervalMs);
  }

  /** Writes what is buffered; resolves when it (and any write before it) is done. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.writing = this.writing.then(async () => {
      if (this.buffer.length === 0 || this.fenced) return;
      const batch = this.buffer;
      this.buffer = [];
      try {
        await writeMetrics(this.db, this.runId, this.attempt, batch);
      } catch (e) {
        if (e instanceof FencedOutError) {
          this.fenced = e;
          return;
        }
        this.buffer = batch.concat(this.buffer);
        this.opts.onError(e);
        this.timer ??= setTimeout(() => void this.flush(), this.opts.intervalMs);
      }
    });
    return this.writing;
  }

  /** Flushes until everything is written (or fenced out), retrying failures. */
  async drain(retries = 10): Promise<void> {
    for (let i = 0; i <= retries; i++) {
      await this.flush();
      if (this.buffer.length === 0 || this.fenced) return;
      await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** i)));
    }
    throw new Error(`could not write ${this.buffer.length} metric points to Postgres`);
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
