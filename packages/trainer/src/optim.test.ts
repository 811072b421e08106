import { parseSpec, type RunSpec } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { decayWeights, learningRateAt, makeOptimizer } from './optim.js';

const spec = (training: Record<string, unknown>): RunSpec =>
  parseSpec({
    kind: 'train',
    student: { preset: 'mlp' },
    data: { train: { format: 'idx', images: 'file:///x', labels: 'file:///y' } },
    training,
  });

describe('learning-rate schedules', () => {
  it('warms up linearly, then follows the schedule', () => {
    const s = spec({ optimizer: { type: 'sgd', learningRate: 0.1 }, warmupSteps: 4 });
    const got = [0, 1, 2, 3, 4, 50].map((step) => learningRateAt(s, step, 100, 10));
    for (const [i, want] of [0.025, 0.05, 0.075, 0.1, 0.1, 0.1].entries())
      expect(got[i]).toBeCloseTo(want, 12);
  });

  it('step: multiplies by gamma every N epochs', () => {
    const s = spec({
      optimizer: { type: 'adam', learningRate: 0.01 },
      schedule: { type: 'step', everyEpochs: 2, gamma: 0.5 },
    });
    // 10 steps an epoch: epochs 0–1 at 0.01, 2–3 at 0.005, 4–5 at 0.0025.
    expect([0, 19, 20, 39, 40].map((step) => learningRateAt(s, step, 100, 10))).toEqual([
      0.01, 0.01, 0.005, 0.005, 0.0025,
    ]);
  });

  it('cosine: from the base rate down to the minimum over the run', () => {
    const s = spec({
      optimizer: { type: 'adam', learningRate: 0.01 },
      schedule: { type: 'cosine', minLearningRate: 0.001 },
    });
    expect(learningRateAt(s, 0, 100, 10)).toBeCloseTo(0.01, 12);
    // Halfway: min + (base − min)·(1 + cos(π/2))/2 = 0.001 + 0.009/2
    expect(learningRateAt(s, 50, 100, 10)).toBeCloseTo(0.0055, 12);
    expect(learningRateAt(s, 100, 100, 10)).toBeCloseTo(0.001, 12);
  });
});

describe('optimizers', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });

  it('makes Nesterov momentum when asked', () => {
    const o = makeOptimizer(
      spec({ optimizer: { type: 'sgd', momentum: 0.9, nesterov: true } }),
    ) as unknown as {
      useNesterov: boolean;
      momentum: number;
    };
    expect(o.useNesterov).toBe(true);
    expect(o.momentum).toBe(0.9);
  });

  it('AdamW decays kernels by lr·λ and leaves biases alone', () => {
    const model = tf.sequential({
      layers: [
        tf.layers.dense({ inputShape: [2], units: 1, kernelInitializer: 'ones', biasInitializer: 'ones' }),
      ],
    });
    decayWeights(model, 0.1, 0.5);
    const [kernel, bias] = model.getWeights().map((w) => Array.from(w.dataSync()));
    expect(kernel).toEqual([0.949999988079071, 0.949999988079071]); // 1 · (1 − 0.1·0.5) in float32
    expect(bias).toEqual([1]);
  });
});
