/**
 * Retort's wasm kernels against the stock ones, side by side in one process: a training step of
 * an MLP (dense gradients: BatchMatMul with transposed operands) and of a small CNN (conv input
 * gradients), with the stock kernels and with Retort's. The stock wasm backend has no
 * Conv2DBackpropFilter at all, so for the CNN both variants use Retort's filter gradient.
 */

import { initBackend, installWasmConvGradients, installWasmTransposedMatMul } from '@retort/trainer';
import * as tf from '@tensorflow/tfjs';

await initBackend('wasm');

function stepper(model: tf.LayersModel, inputShape: number[], batch: number) {
  const opt = tf.train.adam(1e-3);
  const x = tf.randomUniform([batch, ...inputShape], 0, 1, 'float32', 1);
  const y = tf.oneHot(tf.randomUniform([batch], 0, 10, 'int32', 2) as tf.Tensor1D, 10);
  return () =>
    tf.tidy(() => {
      opt.minimize(
        () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
      );
    });
}

function msPerStep(step: () => void, reps: number): number {
  for (let i = 0; i < 3; i++) step();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) step();
  return (performance.now() - t0) / reps;
}

const mlp = tf.sequential({
  layers: [
    tf.layers.flatten({ inputShape: [28, 28, 1] }),
    tf.layers.dense({ units: 512, activation: 'relu' }),
    tf.layers.dense({ units: 256, activation: 'relu' }),
    tf.layers.dense({ units: 10 }),
  ],
});
const cnn = tf.sequential({
  layers: [
    tf.layers.conv2d({
      inputShape: [28, 28, 1],
      filters: 16,
      kernelSize: 3,
      padding: 'same',
      activation: 'relu',
    }),
    tf.layers.maxPooling2d({ poolSize: 2 }),
    tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu' }),
    tf.layers.maxPooling2d({ poolSize: 2 }),
    tf.layers.flatten(),
    tf.layers.dense({ units: 64, activation: 'relu' }),
    tf.layers.dense({ units: 10 }),
  ],
});

const cases = [
  { name: 'MLP 784-512-256-10 step, batch 128', step: stepper(mlp, [28, 28, 1], 128), reps: 30, batch: 128 },
  {
    name: 'CNN 16-32 conv + 64 dense step, batch 64',
    step: stepper(cnn, [28, 28, 1], 64),
    reps: 5,
    batch: 64,
  },
];

console.log(
  '\nwasm training steps: stock tfjs-backend-wasm kernels vs Retort’s (same process, same tensors)',
);
console.log('                                          stock ms   retort ms   speedup   retort samples/s');
for (const c of cases) {
  installWasmTransposedMatMul(false);
  installWasmConvGradients(false);
  const stock = msPerStep(c.step, c.reps);
  installWasmTransposedMatMul(true);
  installWasmConvGradients(true);
  const ours = msPerStep(c.step, c.reps);
  console.log(
    `${c.name.padEnd(40)} ${stock.toFixed(1).padStart(9)} ${ours.toFixed(1).padStart(11)} ${`${(stock / ours).toFixed(2)}×`.padStart(9)} ${((c.batch / ours) * 1000).toFixed(0).padStart(18)}`,
  );
}
