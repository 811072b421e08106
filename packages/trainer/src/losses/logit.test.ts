import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { ceLoss, dkdLoss, kdLoss, temperatureAt } from './logit.js';

const value = (t: tf.Scalar) => {
  const v = t.dataSync()[0]!;
  t.dispose();
  return v;
};

describe('distillation losses', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });

  it('kd at T = 1 is the KL divergence worked out by hand', () => {
    // Teacher logits [ln 3, 0] → p = [3/4, 1/4]; student logits [0, 0] → q = [1/2, 1/2].
    // KL(p || q) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.75 · 0.405465 − 0.25 · 0.693147 = 0.130812
    const s = tf.tensor2d([[0, 0]]);
    const t = tf.tensor2d([[Math.log(3), 0]]);
    expect(value(kdLoss(s, t, 1))).toBeCloseTo(0.130812, 5);
  });

  it('kd at T = 2 softens both sides and scales by T²', () => {
    // t/T = [ln 3 / 2, 0] → p = [√3, 1] / (√3 + 1) = [0.633975, 0.366025]; q stays [1/2, 1/2].
    // KL = 0.633975 ln(1.267949) + 0.366025 ln(0.732051) = 0.150506 − 0.114165 = 0.036341; × T² = 0.145363
    const s = tf.tensor2d([[0, 0]]);
    const t = tf.tensor2d([[Math.log(3), 0]]);
    expect(value(kdLoss(s, t, 2))).toBeCloseTo(0.145363, 5);
  });

  it('kd averages over the batch and is zero where student and teacher agree', () => {
    const s = tf.tensor2d([
      [0, 0],
      [1, 2],
    ]);
    const t = tf.tensor2d([
      [Math.log(3), 0],
      [1, 2],
    ]);
    expect(value(kdLoss(s, t, 1))).toBeCloseTo(0.130812 / 2, 5);
  });

  it('kd matches a direct evaluation of its formula on random logits', () => {
    const sv = [
      [0.3, -1.2, 2.0, 0.1],
      [1.5, 0.2, -0.7, 0.9],
      [-0.4, 0.8, 0.0, -2.1],
    ];
    const tv = [
      [1.1, -0.5, 1.7, 0.0],
      [0.2, 0.3, -1.0, 2.2],
      [0.9, 0.1, -0.3, -1.0],
    ];
    const T = 3;
    const softmax = (row: number[]) => {
      const m = Math.max(...row);
      const e = row.map((x) => Math.exp((x - m) / T));
      const z = e.reduce((a, b) => a + b, 0);
      return e.map((x) => x / z);
    };
    let expected = 0;
    for (let i = 0; i < sv.length; i++) {
      const p = softmax(tv[i]!);
      const q = softmax(sv[i]!);
      expected += p.reduce((acc, pk, k) => acc + pk * Math.log(pk / q[k]!), 0);
    }
    expected = (expected / sv.length) * T * T;
    expect(value(kdLoss(tf.tensor2d(sv), tf.tensor2d(tv), T))).toBeCloseTo(expected, 5);
  });

  it('dkd matches its formula evaluated directly (target and non-target parts, weighted apart)', () => {
    const sv = [
      [0.3, -1.2, 2.0, 0.1],
      [1.5, 0.2, -0.7, 0.9],
    ];
    const tv = [
      [1.1, -0.5, 1.7, 0.0],
      [0.2, 0.3, -1.0, 2.2],
    ];
    const labels = [2, 3];
    const T = 2;
    const alpha = 1.5;
    const beta = 6;
    const softmax = (row: number[]) => {
      const e = row.map((x) => Math.exp(x / T));
      const z = e.reduce((a, b) => a + b, 0);
      return e.map((x) => x / z);
    };
    const kl = (p: number[], q: number[]) => p.reduce((acc, pk, k) => acc + pk * Math.log(pk / q[k]!), 0);
    let tckd = 0;
    let nckd = 0;
    for (let i = 0; i < 2; i++) {
      const p = softmax(tv[i]!);
      const q = softmax(sv[i]!);
      const t = labels[i]!;
      tckd += kl([p[t]!, 1 - p[t]!], [q[t]!, 1 - q[t]!]);
      // Renormalised over the classes other than the label.
      const others = (v: number[]) => {
        const rest = v.filter((_, k) => k !== t);
        const z = rest.reduce((a, b) => a + b, 0);
        return rest.map((x) => x / z);
      };
      nckd += kl(others(p), others(q));
    }
    const expected = ((alpha * tckd + beta * nckd) / 2) * T * T;
    const got = dkdLoss(tf.tensor2d(sv), tf.tensor2d(tv), tf.tensor1d(labels, 'int32'), {
      alpha,
      beta,
      temperature: T,
    });
    expect(value(got)).toBeCloseTo(expected, 4);
  });

  it('anneals the temperature linearly or along a cosine', () => {
    expect(temperatureAt(4, 0.7)).toBe(4);
    expect(temperatureAt({ from: 8, to: 2, schedule: 'linear' }, 0.5)).toBe(5);
    expect(temperatureAt({ from: 8, to: 2, schedule: 'cosine' }, 0)).toBe(8);
    expect(temperatureAt({ from: 8, to: 2, schedule: 'cosine' }, 1)).toBeCloseTo(2, 12);
    expect(temperatureAt({ from: 8, to: 2, schedule: 'cosine' }, 0.25)).toBeCloseTo(
      8 - (6 * (1 - Math.cos(Math.PI / 4))) / 2,
      12,
    );
  });

  it('ce is the negative log-probability of the label, averaged', () => {
    // Logits [ln 3, 0] give p(label 0) = 3/4: −ln 0.75 = 0.287682; label 1: −ln 0.25 = 1.386294.
    const s = tf.tensor2d([
      [Math.log(3), 0],
      [Math.log(3), 0],
    ]);
    expect(value(ceLoss(s, tf.tensor1d([0, 1], 'int32')))).toBeCloseTo((0.287682 + 1.386294) / 2, 5);
  });
});
