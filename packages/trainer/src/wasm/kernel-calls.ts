import * as tf from '@tensorflow/tfjs';

type Backend = tf.KernelBackend & { disposeData(dataId: tf.DataId, force?: boolean): boolean };

/**
 * Runs other wasm kernels from inside a kernel, the way tfjs's own composite kernels do, and frees
 * every intermediate result when the scope ends (the returned one excepted).
 */
export class KernelScope {
  private readonly temps: tf.TensorInfo[] = [];
  readonly backend: Backend;

  constructor(backend: tf.KernelBackend) {
    this.backend = backend as Backend;
  }

  /** Calls kernel `name` and tracks its output for disposal. */
  run(name: string, inputs: tf.NamedTensorInfoMap | tf.TensorInfo[], attrs: object = {}): tf.TensorInfo {
    const kernel = tf.getKernel(name, 'wasm');
    if (!kernel) throw new Error(`the wasm backend has no ${name} kernel`);
    const out = kernel.kernelFunc({
      inputs: inputs as tf.NamedTensorInfoMap,
      backend: this.backend,
      attrs: attrs as tf.NamedAttrMap,
    }) as tf.TensorInfo;
    this.temps.push(out);
    return out;
  }

  transpose(x: tf.TensorInfo, perm: number[]): tf.TensorInfo {
    return this.run('Transpose', { x }, { perm });
  }

  reshape(x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
    return this.run('Reshape', { x }, { shape });
  }

  pad(x: tf.TensorInfo, paddings: [number, number][]): tf.TensorInfo {
    return paddings.every(([a, b]) => a === 0 && b === 0)
      ? x
      : this.run('PadV2', { x }, { paddings, constantValue: 0 });
  }

  slice(x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo {
    return size.every((s, i) => begin[i] === 0 && s === x.shape[i])
      ? x
      : this.run('Slice', { x }, { begin, size });
  }

  /** Forward convolution (NHWC), stride 1, explicit padding, optional dilation: XNNPACK's fast path. */
  conv(
    x: tf.TensorInfo,
    filter: tf.TensorInfo,
    pad: [[number, number], [number, number]],
    dilations: [number, number] = [1, 1],
  ) {
    return this.run(
      'Conv2D',
      { x, filter },
      {
        strides: [1, 1],
        pad: [[0, 0], pad[0], pad[1], [0, 0]],
        dataFormat: 'NHWC',
        dilations,
        dimRoundingMode: undefined,
      },
    );
  }

  /** Frees the intermediates; `keep` (the result) stays. */
  close(keep: tf.TensorInfo): tf.TensorInfo {
    for (const t of this.temps) if (t !== keep) this.backend.disposeData(t.dataId);
    return keep;
  }

  dispose(): void {
    for (const t of this.temps) this.backend.disposeData(t.dataId);
  }
}
