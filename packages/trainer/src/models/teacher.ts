import * as tf from '@tensorflow/tfjs';
/**
 * A trained model that answers, for a batch of examples: logits and, when a loss asks for them,
 * intermediate outputs by layer (TensorFlow.js) or node (ONNX) name. What runs it does not matter
 * to the training loop.
 */
export interface Teacher {
  /** What runs it, for the summary: `tfjs-<backend>` or `onnxruntime-cpu`. */
  runtime: string;
  params: number;
  numClasses: number;
  /** sha256 of the model's bytes (set by the loader), for cache keys. */
  fingerprint: string;
  /** Logits for `n` examples laid out as [n, ...inputShape], row-major. */
  logits(x: Float32Array, n: number): Promise<Float32Array>;
  /** Logits and the intermediate outputs named at load time, in that order (feature maps as NHWC). */
  forward(x: Float32Array, n: number): Promise<{ logits: Float32Array; features: FeatureBatch[] }>;
  /**
   * For gradient matching: ∂ log softmax(z / T)[label] / ∂ input, for each example, laid out like
   * `x`. Only teachers that TensorFlow.js can differentiate have it.
   */
  inputGradients?(x: Float32Array, n: number, labels: Int32Array, temperature: number): Promise<Float32Array>;
  dispose(): void;
}

/** How a model that TensorFlow.js runs is asked for its outputs; see `tfjsRunTeacher`. */
export interface TfjsRun {
  params: number;
  numClasses: number;
  /** One example's shape as the model takes it. */
  inputShape: number[];
  /** The model's output is softmax probabilities, not logits. */
  endsInSoftmax: boolean;
  /** The model's output for a batch, then (when `withFeatures`) the intermediate outputs named at load. */
  outputs(x: tf.Tensor, withFeatures: boolean): tf.Tensor[];
  dispose(): void;
}

/**
 * A teacher over a model TensorFlow.js runs (layers or graph): batches in, logits and features
 * out, and input gradients by differentiating the model. A softmax output is turned back into
 * logits (log-probabilities) before the temperature applies.
 */
export function tfjsRunTeacher(m: TfjsRun): Teacher {
  const batch = (x: Float32Array, n: number) => tf.tensor(x, [n, ...m.inputShape]);
  const read = async (t: tf.Tensor) => {
    const v = (await t.data()) as Float32Array;
    t.dispose();
    return v;
  };
  const asLogits = (v: Float32Array) => (m.endsInSoftmax ? logOfProbabilities(v) : v);
  const logitsOf = (y: tf.Tensor) => (m.endsInSoftmax ? tf.log(tf.maximum(y, 1e-12)) : y);
  return {
    runtime: `tfjs-${tf.getBackend()}`,
    params: m.params,
    numClasses: m.numClasses,
    fingerprint: '',
    async logits(x, n) {
      return asLogits(await read(tf.tidy(() => m.outputs(batch(x, n), false)[0]!)));
    },
    async forward(x, n) {
      const ys = tf.tidy(() => m.outputs(batch(x, n), true));
      const logits = asLogits(await read(ys[0]!));
      const features: FeatureBatch[] = [];
      for (const y of ys.slice(1)) features.push({ shape: y.shape, data: await read(y) });
      return { logits, features };
    },
    // ∂ log softmax(z(x) / T)[label] / ∂x for each example.
    async inputGradients(x, n, labels, temperature) {
      const g = tf.tidy(() => {
        const onehot = tf.oneHot(tf.tensor1d(labels, 'int32'), m.numClasses);
        return tf.grad((xi: tf.Tensor) =>
          tf.sum(tf.mul(tf.logSoftmax(tf.div(logitsOf(m.outputs(xi, false)[0]!), temperature)), onehot)),
        )(batch(x, n));
      });
      return read(g);
    },
    dispose: () => m.dispose(),
  };
}

/** An intermediate output for a batch: values, and the shape with the batch first. */
export interface FeatureBatch {
  data: Float32Array;
  shape: number[];
}

export const product = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

/**
 * Log-probabilities stand in for logits when a model ends in softmax: softmax(log p / T) is the
 * same distribution that softmax(z / T) gives, since the two differ by a constant per row.
 */
export function logOfProbabilities(p: Float32Array): Float32Array {
  const out = new Float32Array(p.length);
  for (let i = 0; i < p.length; i++) out[i] = Math.log(Math.max(p[i]!, 1e-12));
  return out;
}

export function looksLikeProbabilities(v: Float32Array, classes: number): boolean {
  for (let r = 0; r < v.length / classes; r++) {
    let sum = 0;
    for (let c = 0; c < classes; c++) {
      const x = v[r * classes + c]!;
      if (x < 0 || x > 1) return false;
      sum += x;
    }
    if (Math.abs(sum - 1) > 1e-3) return false;
  }
  return true;
}

/** NCHW → NHWC, so feature maps from PyTorch exports line up with TensorFlow.js students. */
export function nchwToNhwc(data: Float32Array, shape: number[]): FeatureBatch {
  const [n, c, h, w] = shape as [number, number, number, number];
  const out = new Float32Array(data.length);
  for (let i = 0; i < n; i++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++)
          out[((i * h + y) * w + x) * c + ch] = data[((i * c + ch) * h + y) * w + x]!;
  return { data: out, shape: [n, h, w, c] };
}
