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
  private lastError: unknown;

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
        this.lastError = e;
        this.opts.onError(e);
        this.timer ??= setTimeout(() => void this.flush(), this.opts.intervalMs);
      }
    });
    return this.writing;
  }

  /**
   * Writes everything buffered. When a write fails, rethrows what failed (so an outage reads as
   * one to `duringOutage`, which retries for as long as Postgres may be away); the points stay
   * buffered for the next try. Fenced out: resolves, with `fenced` set.
   */
  async drain(): Promise<void> {
    this.lastError = undefined;
    await this.flush();
    if (this.buffer.length > 0 && !this.fenced) {
      clearTimeout(this.timer); // the caller retries; no timer of our own meanwhile
      this.timer = undefined;
      throw this.lastError ?? new Error(`${this.buffer.length} metric points are not written yet`);
    }
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
