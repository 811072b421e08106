import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend.js';
import { Adapter, attentionLoss, hintLoss, rkdLoss } from './feature.js';
import { inputGradient, jacobianLoss, pseudoLabelLoss } from './sample.js';

const value = (t: tf.Scalar) => {
  const v = t.dataSync()[0]!;
  t.dispose();
  return v;
};

/** Deterministic pseudo-random numbers for fixtures (no dependence on tfjs's generators). */
function numbers(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return (s / 2 ** 31) * 2 - 1;
  });
}

describe('feature-based losses against direct computations', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });

  it('hint: the adapter maps channels at every position, then mean squared error', () => {
    const s = numbers(2 * 2 * 2 * 3, 1); // [2, 2, 2, 3]
    const t = numbers(2 * 2 * 2 * 2, 2); // [2, 2, 2, 2]
    const adapter = new Adapter([2, 2, 2, 3], [2, 2, 2, 2], 7, 0);
    const k = adapter.kernel.arraySync() as number[][];
    let sum = 0;
    for (let p = 0; p < 8; p++) {
      for (let o = 0; o < 2; o++) {
        let y = 0; // bias starts at 0
        for (let c = 0; c < 3; c++) y += s[p * 3 + c]! * k[c]![o]!;
        sum += (y - t[p * 2 + o]!) ** 2;
      }
    }
    const got = hintLoss(tf.tensor4d(s, [2, 2, 2, 3]), tf.tensor4d(t, [2, 2, 2, 2]), adapter);
    expect(value(got)).toBeCloseTo(sum / 16, 5);
    adapter.dispose();
  });

  it('attention: normalised Σ|A|² maps, compared by mean squared difference', () => {
    const s = numbers(2 * 3 * 3 * 2, 3);
    const t = numbers(2 * 3 * 3 * 4, 4);
    const map = (a: number[], c: number) => {
      const out: number[][] = [];
      for (let i = 0; i < 2; i++) {
        const m = Array.from({ length: 9 }, (_, p) => {
          let v = 0;
          for (let ch = 0; ch < c; ch++) v += a[(i * 9 + p) * c + ch]! ** 2;
          return v / c;
        });
        const norm = Math.sqrt(m.reduce((acc, v) => acc + v * v, 0));
        out.push(m.map((v) => v / norm));
      }
      return out;
    };
    const ms = map(s, 2);
    const mt = map(t, 4);
    let sum = 0;
    for (let i = 0; i < 2; i++) for (let p = 0; p < 9; p++) sum += (ms[i]![p]! - mt[i]![p]!) ** 2;
    expect(value(attentionLoss(tf.tensor4d(s, [2, 3, 3, 2]), tf.tensor4d(t, [2, 3, 3, 4]), 2))).toBeCloseTo(
      sum / 18,
      5,
    );
  });

  /** RKD by its definition, in double precision: every pair and triplet visited in loops. */
  function referenceRkd(es: number[], ds: number, et: number[], dt: number, n: number): number {
    const rows = (e: number[], d: number) => Array.from({ length: n }, (_, i) => e.slice(i * d, (i + 1) * d));
    const dist = (a: number[], b: number[]) => Math.sqrt(a.reduce((acc, v, k) => acc + (v - b[k]!) ** 2, 0));
    const distances = (r: number[][]) => {
      const d = r.map((a) => r.map((b) => dist(a, b)));
      const mean = d.flat().reduce((a, b) => a + b, 0) / (n * (n - 1));
      return d.map((row) => row.map((v) => v / mean));
    };
    const angles = (r: number[][]) => {
      const out: number[] = [];
      for (let j = 0; j < n; j++)
        for (let i = 0; i < n; i++)
          for (let k = 0; k < n; k++) {
            const u = r[i]!.map((v, q) => v - r[j]![q]!);
            const w = r[k]!.map((v, q) => v - r[j]![q]!);
            const nu = Math.sqrt(u.reduce((a, v) => a + v * v, 0)) + 1e-12;
            const nw = Math.sqrt(w.reduce((a, v) => a + v * v, 0)) + 1e-12;
            out.push(u.reduce((a, v, q) => a + (v / nu) * (w[q]! / nw), 0));
          }
      return out;
    };
    const huber = (a: number[], b: number[]) =>
      a.reduce((acc, v, i) => {
        const d = Math.abs(v - b[i]!);
        return acc + (d <= 1 ? 0.5 * d * d : d - 0.5);
      }, 0) / a.length;
    const rs = rows(es, ds);
    const rt = rows(et, dt);
    return 1 * huber(distances(rs).flat(), distances(rt).flat()) + 2 * huber(angles(rs), angles(rt));
  }
  const rkd = (es: number[], ds: number, et: number[], dt: number, n: number) =>
    rkdLoss(tf.tensor2d(es, [n, ds]), tf.tensor2d(et, [n, dt]), { distance: 1, angle: 2 });

  it('rkd: smooth-L1 of normalised distances and of triplet angles', () => {
    const es = numbers(4 * 3, 5);
    const et = numbers(4 * 5, 6);
    expect(value(rkd(es, 3, et, 5, 4))).toBeCloseTo(referenceRkd(es, 3, et, 5, 4), 4);
  });

  it('rkd: stays exact on a larger batch with an offset, far-from-zero embedding and two equal rows', () => {
    const n = 24;
    // Offset by 50 so that a Gram matrix of the raw rows would lose the differences to rounding.
    const es = numbers(n * 8, 7).map((v) => v + 50);
    const et = numbers(n * 16, 8).map((v) => 3 * v);
    es.splice(8, 8, ...es.slice(0, 8)); // row 1 = row 0: their difference has no direction
    et.splice(16, 16, ...et.slice(0, 16));
    expect(value(rkd(es, 8, et, 16, n))).toBeCloseTo(referenceRkd(es, 8, et, 16, n), 4);
  });

  it('rkd: its gradient agrees with finite differences of the direct computation', () => {
    const n = 6;
    const es = numbers(n * 3, 9);
    const et = numbers(n * 4, 10);
    const grad = tf.grad((x: tf.Tensor) => rkdLoss(x, tf.tensor2d(et, [n, 4]), { distance: 1, angle: 2 }))(
      tf.tensor2d(es, [n, 3]),
    );
    const got = Array.from(grad.dataSync());
    grad.dispose();
    const h = 1e-5;
    const fd = es.map((_, q) => {
      const up = es.map((v, r) => (r === q ? v + h : v));
      const down = es.map((v, r) => (r === q ? v - h : v));
      return (referenceRkd(up, 3, et, 4, n) - referenceRkd(down, 3, et, 4, n)) / (2 * h);
    });
    for (const [q, v] of fd.entries()) expect(got[q]).toBeCloseTo(v, 3);
  });

  it('jacobian: the input gradient agrees with finite differences of the model', () => {
    // A tiny model, x → tanh(xW1) W2, evaluated here in double precision.
    const W1 = [
      [0.5, -0.3, 0.8],
      [0.1, 0.9, -0.4],
    ];
    const W2 = [
      [0.7, -0.2],
      [-0.6, 0.3],
      [0.2, 0.5],
    ];
    const T = 2;
    const label = 1;
    const f = (x: number[]) => {
      const h = [0, 1, 2].map((j) => Math.tanh(x[0]! * W1[0]![j]! + x[1]! * W1[1]![j]!));
      const z = [0, 1].map((o) => h.reduce((a, v, j) => a + v * W2[j]![o]!, 0) / T);
      const lse = Math.log(Math.exp(z[0]!) + Math.exp(z[1]!));
      return z[label]! - lse;
    };
    const x0 = [0.3, -0.7];
    const eps = 1e-6;
    const fd = x0.map((_, i) => {
      const up = [...x0];
      const down = [...x0];
      up[i]! += eps;
      down[i]! -= eps;
      return (f(up) - f(down)) / (2 * eps);
    });
    const w1 = tf.tensor2d(W1);
    const w2 = tf.tensor2d(W2);
    const apply = (x: tf.Tensor) => tf.matMul(tf.tanh(tf.matMul(x as tf.Tensor2D, w1)), w2);
    const g = inputGradient(apply, tf.tensor2d([x0]), tf.oneHot(tf.tensor1d([label], 'int32'), 2), T);
    const got = Array.from(g.dataSync());
    for (let i = 0; i < 2; i++) expect(got[i]).toBeCloseTo(fd[i]!, 5);
    // Gradients that point the same way (whatever their length) match perfectly.
    expect(value(jacobianLoss(g, tf.mul(g, 3)))).toBeCloseTo(0, 10);
    // Opposite directions are as far apart as unit vectors get: |u − (−u)|² = 4.
    expect(value(jacobianLoss(g, tf.neg(g)))).toBeCloseTo(4, 5);
  });

  it('pseudo-label: hard counts only confident examples; soft is KD at T', () => {
    const s = tf.tensor2d([
      [0, 0],
      [1, 0],
    ]);
    // Teacher: row 1 confident in class 0 (p = 0.95), row 2 not (p = 0.6).
    const t = tf.tensor2d([
      [Math.log(19), 0],
      [Math.log(1.5), 0],
    ]);
    // Only row 1 counts: −log softmax([0, 0])[0] = ln 2.
    expect(value(pseudoLabelLoss(s, t, { mode: 'hard', threshold: 0.9, temperature: 1 }))).toBeCloseTo(
      Math.LN2,
      5,
    );
    // With a threshold of 0.5 both count: (ln 2 + ln(1 + e^−1)) / 2.
    expect(value(pseudoLabelLoss(s, t, { mode: 'hard', threshold: 0.5, temperature: 1 }))).toBeCloseTo(
      (Math.LN2 + Math.log(1 + Math.exp(-1))) / 2,
      5,
    );
    expect(value(pseudoLabelLoss(s, t, { mode: 'hard', threshold: 0.99, temperature: 1 }))).toBe(0);
    // Soft at T = 1 is the mean KL: row 1 KL([.95,.05] || [.5,.5]); row 2 KL([.6,.4] || softmax([1,0])).
    const kl = (p: number[], q: number[]) => p.reduce((a, v, i) => a + v * Math.log(v / q[i]!), 0);
    const q2 = [Math.E / (Math.E + 1), 1 / (Math.E + 1)];
    const expected = (kl([0.95, 0.05], [0.5, 0.5]) + kl([0.6, 0.4], q2)) / 2;
    expect(value(pseudoLabelLoss(s, t, { mode: 'soft', threshold: 0, temperature: 1 }))).toBeCloseTo(
      expected,
      5,
    );
  });
});

describe('input gradients differentiated in the weights (gradient matching)', () => {
  beforeAll(async () => {
    await initBackend('wasm'); // with Retort's convolution gradient kernels
  });

  // f(W) = Σ (∂ log softmax(net(x; W))[label] / ∂x)², its gradient in W against central differences.
  // ε is small enough not to cross a ReLU or max-pool kink at these points.
  function checkAgainstFiniteDifferences(
    shape: number[],
    net: (x: tf.Tensor, w: tf.Tensor) => tf.Tensor,
    x: tf.Tensor,
  ) {
    const onehot = tf.oneHot(tf.tensor1d([0, 2], 'int32'), 3);
    const f = (w: tf.Tensor) =>
      tf.sum(tf.square(inputGradient((xi) => net(xi, w), x, onehot, 2))) as tf.Scalar;
    const w0 = numbers(
      shape.reduce((a, b) => a * b, 1),
      13,
    );
    const analytic = tf.grad(f)(tf.tensor(w0, shape)).dataSync();
    const eps = 1e-3;
    for (const k of [0, 4, 9, 13]) {
      const up = [...w0];
      const down = [...w0];
      up[k]! += eps;
      down[k]! -= eps;
      const fd = (value(f(tf.tensor(up, shape))) - value(f(tf.tensor(down, shape)))) / (2 * eps);
      expect(Math.abs(analytic[k]! - fd)).toBeLessThan(0.01 + 0.01 * Math.abs(fd));
    }
  }

  it('are exact through convolution, ReLU and max-pooling (the cnn preset)', () => {
    const V = tf.tensor2d(numbers(18 * 3, 12), [18, 3]);
    checkAgainstFiniteDifferences(
      [3, 3, 1, 2],
      (x, w) => {
        const h = tf.maxPool(
          tf.relu(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same')),
          2,
          2,
          'valid',
        );
        return tf.matMul(tf.reshape(h, [2, 18]), V);
      },
      tf.tensor4d(numbers(2 * 6 * 6 * 1, 11), [2, 6, 6, 1]),
    );
  });

  it('are exact through tanh and sigmoid, whose stock gradients read their outputs', () => {
    const V = tf.tensor2d(numbers(4 * 3, 12), [4, 3]);
    const x = tf.tensor2d(numbers(2 * 6, 11), [2, 6]);
    checkAgainstFiniteDifferences(
      [6, 4],
      (xi, w) => tf.matMul(tf.tanh(tf.matMul(xi as tf.Tensor2D, w as tf.Tensor2D)), V),
      x,
    );
    checkAgainstFiniteDifferences(
      [6, 4],
      (xi, w) => tf.matMul(tf.sigmoid(tf.matMul(xi as tf.Tensor2D, w as tf.Tensor2D)), V),
      x,
    );
  });
});
