import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { installWasmConvGradients } from './conv-gradients.js';

interface Case {
  x: [number, number, number, number];
  f: [number, number, number, number];
  strides: number | [number, number];
  pad: 'same' | 'valid' | number;
}

/** Gradients of sum(conv2d(x, W) * r) with respect to W and x: Conv2DBackpropFilter/Input(dy = r). */
function grads(c: Case, xs: Float32Array, ws: Float32Array): { dw: Float32Array; dx: Float32Array } {
  const x = tf.tensor4d(xs, c.x);
  const w = tf.tensor4d(ws, c.f);
  const r = tf.tidy(() => tf.randomNormal(tf.conv2d(x, w, c.strides, c.pad).shape, 0, 1, 'float32', 7));
  const [dx, dw] = tf.grads((xv: tf.Tensor, wv: tf.Tensor) =>
    tf.sum(tf.mul(tf.conv2d(xv as tf.Tensor4D, wv as tf.Tensor4D, c.strides, c.pad), r)),
  )([x, w]);
  const out = { dw: dw!.dataSync() as Float32Array, dx: dx!.dataSync() as Float32Array };
  tf.dispose([x, w, r, dx!, dw!]);
  return out;
}

function random(n: number, seed: number): Float32Array {
  const t = tf.randomNormal([n], 0, 1, 'float32', seed);
  const v = t.dataSync() as Float32Array;
  t.dispose();
  return v;
}

function maxRelativeError(actual: Float32Array, expected: Float32Array): number {
  let maxErr = 0;
  let maxAbs = 0;
  for (let i = 0; i < actual.length; i++) {
    maxErr = Math.max(maxErr, Math.abs(actual[i]! - expected[i]!));
    maxAbs = Math.max(maxAbs, Math.abs(expected[i]!));
  }
  return maxErr / Math.max(1, maxAbs);
}

describe('conv gradients on wasm', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    installWasmConvGradients();
  });

  it('registers Conv2DBackpropFilter, which the wasm backend lacks as shipped', () => {
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
  });

  const cases: Case[] = [
    { x: [2, 8, 8, 1], f: [3, 3, 1, 4], strides: 1, pad: 'same' },
    { x: [3, 9, 7, 3], f: [3, 3, 3, 5], strides: 1, pad: 'valid' },
    { x: [2, 10, 10, 2], f: [3, 3, 2, 3], strides: 2, pad: 'same' },
    { x: [2, 11, 9, 4], f: [5, 3, 4, 2], strides: [2, 3], pad: 'valid' },
    { x: [2, 9, 9, 2], f: [4, 4, 2, 3], strides: 2, pad: 'same' },
    { x: [1, 6, 6, 2], f: [1, 1, 2, 6], strides: 1, pad: 'valid' },
    { x: [2, 7, 7, 3], f: [3, 3, 3, 2], strides: 1, pad: 1 },
  ];

  for (const c of cases) {
    it(`match the cpu backend for x ${c.x}, filter ${c.f}, strides ${c.strides}, pad ${c.pad}`, async () => {
      const xs = random(
        c.x.reduce((a, b) => a * b),
        1,
      );
      const ws = random(
        c.f.reduce((a, b) => a * b),
        2,
      );
      await tf.setBackend('cpu');
      const expected = grads(c, xs, ws);
      await tf.setBackend('wasm');
      const before = tf.memory().numTensors;
      const actual = grads(c, xs, ws);
      expect(tf.memory().numTensors).toBe(before);
      expect(actual.dw.length).toBe(expected.dw.length);
      expect(actual.dx.length).toBe(expected.dx.length);
      expect(Math.max(...expected.dw.map(Math.abs))).toBeGreaterThan(0.1);
      expect(maxRelativeError(actual.dw, expected.dw)).toBeLessThan(1e-5);
      expect(maxRelativeError(actual.dx, expected.dx)).toBeLessThan(1e-5);
    });
  }

  it('let a conv layer train on wasm without leaking memory', async () => {
    await tf.setBackend('wasm');
    const init = (seed: number) => tf.initializers.glorotUniform({ seed });
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({
          inputShape: [8, 8, 1],
          filters: 4,
          kernelSize: 3,
          activation: 'relu',
          kernelInitializer: init(1),
        }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 2, kernelInitializer: init(2) }),
      ],
    });
    const opt = tf.train.adam(0.01);
    const x = tf.randomNormal([16, 8, 8, 1], 0, 1, 'float32', 3);
    const y = tf.oneHot(tf.tensor1d([0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0], 'int32'), 2);
    const lossOf = () => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar;
    const lossNow = () => {
      const l = lossOf();
      const v = l.dataSync()[0]!;
      l.dispose();
      return v;
    };
    const first = lossNow();
    tf.tidy(() => {
      opt.minimize(lossOf); // creates the optimizer's slots
    });
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 30; i++)
      tf.tidy(() => {
        opt.minimize(lossOf);
      });
    expect(tf.memory().numTensors).toBe(tensors);
    expect(lossNow()).toBeLessThan(first * 0.5);
  });
});
