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

/**
 * ∂ log softmax(logits(x) / T)[label] / ∂x for a batch, for teachers TensorFlow.js runs: `logits`
 * maps an input batch to its logits, differentiably.
 */
export async function labelLogProbGradients(
  logits: (x: tf.Tensor) => tf.Tensor,
  x: Float32Array,
  shape: number[],
  labels: Int32Array,
  numClasses: number,
  temperature: number,
): Promise<Float32Array> {
  const g = tf.tidy(() => {
    const onehot = tf.oneHot(tf.tensor1d(labels, 'int32'), numClasses);
    return tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(tf.logSoftmax(tf.div(logits(xi), temperature)), onehot)))(
      tf.tensor(x, shape),
    );
  });
  const v = (await g.data()) as Float32Array;
  g.dispose();
  return v;
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
