import type { RunSpec, ScheduleSpec } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';

/** The optimizer a spec names. AdamW's weight decay is applied after each step (`decayWeights`). */
export function makeOptimizer(spec: RunSpec): tf.Optimizer {
  const o = spec.training.optimizer;
  switch (o.type) {
    case 'sgd':
      return o.momentum > 0
        ? tf.train.momentum(o.learningRate, o.momentum, o.nesterov)
        : tf.train.sgd(o.learningRate);
    case 'adam':
    case 'adamw':
      return tf.train.adam(o.learningRate);
  }
}

/**
 * The learning rate at `step` (steps done so far): linear warm-up over `warmupSteps`, then the
 * schedule. A pure function of the step, so a resumed run needs no schedule state.
 */
export function learningRateAt(
  spec: RunSpec,
  step: number,
  totalSteps: number,
  stepsPerEpoch: number,
): number {
  const base = spec.training.optimizer.learningRate;
  const warmup = spec.training.warmupSteps;
  if (step < warmup) return (base * (step + 1)) / warmup;
  return scheduled(
    spec.training.schedule,
    base,
    step - warmup,
    Math.max(1, totalSteps - warmup),
    stepsPerEpoch,
    warmup,
  );
}

function scheduled(
  s: ScheduleSpec,
  base: number,
  step: number,
  steps: number,
  stepsPerEpoch: number,
  warmup: number,
): number {
  switch (s.type) {
    case 'constant':
      return base;
    case 'step':
      return base * s.gamma ** Math.floor((step + warmup) / stepsPerEpoch / s.everyEpochs);
    case 'cosine':
      return (
        s.minLearningRate +
        ((base - s.minLearningRate) * (1 + Math.cos((Math.PI * Math.min(step, steps)) / steps))) / 2
      );
  }
}

/** Sets the rate the optimizer's next step uses. */
export function setLearningRate(optimizer: tf.Optimizer, lr: number): void {
  const o = optimizer as unknown as { learningRate: number; setLearningRate?: (lr: number) => void };
  if (o.learningRate === lr) return;
  if (o.setLearningRate) o.setLearningRate(lr);
  else o.learningRate = lr;
}

/**
 * AdamW's decoupled weight decay (Loshchilov & Hutter): kernels shrink by lr·λ after each step,
 * outside the adaptive update. Biases are left alone.
 */
export function decayWeights(model: tf.LayersModel, lr: number, weightDecay: number): void {
  if (weightDecay === 0) return;
  const factor = 1 - lr * weightDecay;
  tf.tidy(() => {
    for (const w of model.trainableWeights) {
      if (w.originalName.endsWith('/bias')) continue;
      w.write(tf.mul(w.read(), factor));
    }
  });
}
