import type { EarlyStoppingSpec } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';

/**
 * Early stopping on a validation metric. It keeps a copy of the best epoch's weights; when the
 * metric has not improved for `patience` epochs, training stops and those weights are the result.
 * Its state travels in checkpoints, so a resumed run stops where an uninterrupted one would.
 */
export class EarlyStopping {
  private best: number | undefined;
  private bad = 0;
  bestEpoch = 0;
  private bestWeights: tf.Tensor[] | undefined;

  constructor(
    private readonly spec: EarlyStoppingSpec | undefined,
    private readonly model: tf.LayersModel,
  ) {}

  get enabled(): boolean {
    return this.spec !== undefined;
  }

  /** Records the figures of the epoch just ended (1-based); true when training should stop. */
  observe(epoch: number, v: { accuracy: number; loss: number }): boolean {
    if (!this.spec) return false;
    const higherIsBetter = this.spec.metric === 'val_accuracy';
    const value = higherIsBetter ? v.accuracy : v.loss;
    const improved =
      this.best === undefined ||
      (higherIsBetter ? value > this.best + this.spec.minDelta : value < this.best - this.spec.minDelta);
    if (improved) {
      this.best = value;
      this.bad = 0;
      this.bestEpoch = epoch;
      for (const t of this.bestWeights ?? []) t.dispose();
      this.bestWeights = this.model.weights.map((w) => tf.clone(w.read()));
      return false;
    }
    this.bad++;
    return this.bad >= this.spec.patience;
  }

  /** Puts the best epoch's weights back into the model. */
  restoreBest(): void {
    if (!this.bestWeights) return;
    for (const [i, w] of this.model.weights.entries()) w.write(this.bestWeights[i]!);
  }

  checkpointExtras(): { tensors: { name: string; tensor: tf.Tensor }[]; state: Record<string, unknown> } {
    if (!this.spec) return { tensors: [], state: {} };
    const tensors = (this.bestWeights ?? []).map((tensor, i) => ({
      name: `best/${this.model.weights[i]!.originalName}`,
      tensor,
    }));
    return {
      tensors,
      state: { earlyStopping: { best: this.best ?? null, bad: this.bad, bestEpoch: this.bestEpoch } },
    };
  }

  /** Takes back its state and best weights from a checkpoint; takes ownership of those tensors. */
  resume(state: Record<string, unknown>, extras: Map<string, tf.Tensor>): void {
    const s = state.earlyStopping as { best: number | null; bad: number; bestEpoch: number } | undefined;
    if (!s || !this.spec) return;
    this.best = s.best ?? undefined;
    this.bad = s.bad;
    this.bestEpoch = s.bestEpoch;
    const weights = this.model.weights.map((w) => extras.get(`best/${w.originalName}`));
    if (weights.every((t): t is tf.Tensor => t !== undefined)) {
      this.bestWeights = weights;
      for (const w of this.model.weights) extras.delete(`best/${w.originalName}`);
    }
  }

  dispose(): void {
    for (const t of this.bestWeights ?? []) t.dispose();
    this.bestWeights = undefined;
  }
}
