import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeCheckpoint, restoreCheckpoint } from './checkpoint.js';

function model(seed: number) {
  return tf.sequential({
    layers: [
      tf.layers.dense({
        inputShape: [3],
        units: 4,
        kernelInitializer: tf.initializers.glorotUniform({ seed }),
        name: 'hidden',
      }),
      tf.layers.dense({ units: 2, name: 'out' }),
    ],
  });
}

describe('checkpoints', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });

  it('restore weights and Adam state exactly, even from a Buffer at an offset in a larger one', async () => {
    const a = model(1);
    const optA = tf.train.adam(0.01);
    const x = tf.tensor2d([
      [1, 2, 3],
      [0, -1, 2],
    ]);
    const y = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    const step = (m: tf.LayersModel, o: tf.Optimizer) =>
      tf.tidy(() => {
        o.minimize(() => tf.losses.softmaxCrossEntropy(y, m.apply(x) as tf.Tensor) as tf.Scalar);
      });
    for (let i = 0; i < 3; i++) step(a, optA);
    const ckpt = await encodeCheckpoint(a, optA, { step: 3, epoch: 0, batchInEpoch: 3 });
    // How IPC and pg hand bytes over: a Buffer whose memory starts 19 bytes into a bigger buffer.
    const host = Buffer.alloc(ckpt.bytes.byteLength + 40, 0xff);
    host.set(ckpt.bytes, 19);
    const view = host.subarray(19, 19 + ckpt.bytes.byteLength);

    const b = model(2);
    const optB = tf.train.adam(0.01);
    const { position } = await restoreCheckpoint(view, b, optB);
    expect(position).toEqual({ step: 3, epoch: 0, batchInEpoch: 3 });
    for (let i = 0; i < 3; i++) {
      step(a, optA);
      step(b, optB);
    }
    const wa = a.getWeights().map((w) => Array.from(w.dataSync()));
    const wb = b.getWeights().map((w) => Array.from(w.dataSync()));
    expect(wb).toEqual(wa);
  });

  it('refuses bytes that are not a checkpoint', async () => {
    await expect(
      restoreCheckpoint(new Uint8Array([0, 0, 0, 2, 123, 125]), model(1), tf.train.adam()),
    ).rejects.toMatchObject({
      code: 'RETORT_CHECKPOINT_INVALID',
    });
  });
});
