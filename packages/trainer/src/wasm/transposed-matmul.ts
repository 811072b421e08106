import * as tf from '@tensorflow/tfjs';

/**
 * The wasm backend sends BatchMatMul to XNNPACK only when neither operand is transposed; with
 * `transposeA` or `transposeB` it falls back to a naive blocked loop that runs at about a tenth of
 * the speed. Backpropagation through every dense layer asks for exactly those transposed products
 * (dW = xᵀ·dy, dx = dy·Wᵀ). This wrapper transposes the operand with the (fast) Transpose kernel
 * and hands the untransposed product to the original kernel, which then takes the XNNPACK path.
 */

type Backend = tf.KernelBackend & { disposeData(dataId: tf.DataId, force?: boolean): boolean };

function swapLastTwo(rank: number): number[] {
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return perm;
}

let stock: tf.KernelConfig | undefined;

/**
 * Must run after `tf.setBackend('wasm')`, so the original kernel has been set up.
 * `enabled: false` puts the stock kernel back (benchmarks compare the two).
 */
export function installWasmTransposedMatMul(enabled = true): void {
  stock ??= tf.getKernel('BatchMatMul', 'wasm');
  const transpose = tf.getKernel('Transpose', 'wasm');
  if (!stock || !transpose) return;
  const original = stock;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  if (!enabled) {
    tf.registerKernel(original);
    return;
  }
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return original.kernelFunc(args);
      const backend = args.backend as Backend;
      const t = (x: tf.TensorInfo) =>
        transpose.kernelFunc({
          inputs: { x },
          backend,
          attrs: { perm: swapLastTwo(x.shape.length) },
        }) as tf.TensorInfo;
      const a2 = transposeA ? t(a) : a;
      const b2 = transposeB ? t(b) : b;
      try {
        return original.kernelFunc({
          ...args,
          inputs: { a: a2, b: b2 },
          attrs: { ...args.attrs, transposeA: false, transposeB: false },
        });
      } finally {
        if (transposeA) backend.disposeData(a2.dataId);
        if (transposeB) backend.disposeData(b2.dataId);
      }
    },
  });
}
