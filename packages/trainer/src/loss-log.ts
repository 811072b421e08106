import { RetortError } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';

export interface MetricPoint {
  name: string;
  step: number;
  value: number;
}

/**
 * Per-step loss values, kept on the device until a flush reads them all back in one transfer (a
 * read per step would stall a GPU pipeline). A non-finite loss stops the run with a reason.
 */
export class LossLog {
  private pending: { step: number; values: tf.Scalar[] }[] = [];

  constructor(
    private readonly names: string[],
    private readonly emit: (points: MetricPoint[]) => void,
    readonly flushEvery = 25,
  ) {}

  /** Takes ownership of `values` (one scalar per name). */
  async push(step: number, values: tf.Scalar[]): Promise<void> {
    this.pending.push({ step, values });
    if (this.pending.length >= this.flushEvery) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const stacked = tf.stack(batch.flatMap((p) => p.values));
    const values = (await stacked.data()) as Float32Array;
    stacked.dispose();
    for (const p of batch) for (const v of p.values) v.dispose();
    const points: MetricPoint[] = [];
    let j = 0;
    for (const p of batch)
      for (const name of this.names) points.push({ name, step: p.step, value: values[j++]! });
    const bad = points.find((p) => !Number.isFinite(p.value));
    if (bad) {
      throw new RetortError(
        'RETORT_TRAINING_DIVERGED',
        `the loss became ${bad.value} at step ${bad.step}; lower training.optimizer.learningRate`,
      );
    }
    this.emit(points);
  }

  dispose(): void {
    for (const p of this.pending) for (const v of p.values) v.dispose();
    this.pending = [];
  }
}
