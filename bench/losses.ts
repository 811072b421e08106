/**
 * Relational KD's angle term, the old way and Retort's, side by side in one process on wasm: the
 * loss and its gradient for a batch of 128 (student embedding 16, teacher 64, as in
 * bench:distill). The old way formed every difference e_i − e_j, normalised it and took a batched
 * [B, B, D] × [B, D, B] product, which tfjs-backend-wasm runs as a naive loop; Retort's works from
 * the Gram matrix (one B × B product, the rest elementwise). Both are checked to give the same loss.
 */

import { initBackend, rkdLoss } from '@retort/trainer';
import * as tf from '@tensorflow/tfjs';

await initBackend('wasm');

const safeNorm = (x: tf.Tensor, axis: number) => tf.sqrt(tf.add(tf.sum(tf.square(x), axis, true), 1e-12));
/** The angle term as first written (the baseline). */
function batchedProductAngles(e: tf.Tensor2D): tf.Tensor3D {
  const diff = tf.sub(tf.expandDims(e, 1), tf.expandDims(e, 0));
  const unit = tf.div(diff, safeNorm(diff, 2));
  return tf.matMul(unit as tf.Tensor3D, unit as tf.Tensor3D, false, true);
}
const oldAngleLoss = (s: tf.Tensor2D, t: tf.Tensor2D) =>
  tf.losses.huberLoss(batchedProductAngles(t), batchedProductAngles(s)) as tf.Scalar;
const newAngleLoss = (s: tf.Tensor2D, t: tf.Tensor2D) => rkdLoss(s, t, { distance: 0, angle: 1 });

const B = 128;
const student = tf.variable(tf.randomNormal([B, 16], 0, 1, 'float32', 1) as tf.Tensor2D);
const teacher = tf.randomNormal([B, 64], 0, 1, 'float32', 2) as tf.Tensor2D;

function msPerStep(loss: (s: tf.Tensor2D, t: tf.Tensor2D) => tf.Scalar, reps: number): number {
  const step = () =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => loss(student, teacher));
      value.dataSync();
      for (const g of Object.values(grads)) g.dataSync();
    });
  for (let i = 0; i < 2; i++) step();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) step();
  return (performance.now() - t0) / reps;
}

const [a, b] = tf.tidy(() => [
  oldAngleLoss(student, teacher).dataSync()[0]!,
  newAngleLoss(student, teacher).dataSync()[0]!,
]);
const before = msPerStep(oldAngleLoss, 5);
const after = msPerStep(newAngleLoss, 5);
console.log('\nrkd angle term, loss + gradient, batch 128 (student 16-d, teacher 64-d), wasm');
console.log('                               ms/step   loss');
console.log(`batched [B,B,D] product    ${before.toFixed(1).padStart(10)}   ${a!.toFixed(6)}`);
console.log(`Gram matrix (Retort)       ${after.toFixed(1).padStart(10)}   ${b!.toFixed(6)}`);
console.log(`speedup ${(before / after).toFixed(2)}×, loss difference ${Math.abs(a! - b!).toExponential(1)}`);
