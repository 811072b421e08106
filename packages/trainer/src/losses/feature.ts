import * as tf from '@tensorflow/tfjs';
import { deriveSeed } from '../random.js';

/**
 * Losses on intermediate representations: FitNets hints, attention transfer and relational KD.
 * Feature maps are NHWC, as TensorFlow.js lays them out (ONNX teachers' are converted).
 */

const flatten = (x: tf.Tensor): tf.Tensor2D => tf.reshape(x, [x.shape[0]!, -1]) as tf.Tensor2D;

/** ‖x‖₂ along `axis`, smoothed at 0 so its gradient is finite there (tf.norm's is 0/0). */
export function safeNorm(x: tf.Tensor, axis: number): tf.Tensor {
  return tf.sqrt(tf.add(tf.sum(tf.square(x), axis, true), 1e-12));
}

/** Brings a student feature map to the teacher's height and width (bilinear), when they differ. */
function toSpatial(s: tf.Tensor4D, t: tf.Tensor4D): tf.Tensor4D {
  const [, h, w] = t.shape;
  return s.shape[1] === h && s.shape[2] === w ? s : tf.image.resizeBilinear(s, [h, w]);
}

/**
 * FitNets' adapter: a learned linear map from the student's channels (or features) to the
 * teacher's, applied at every position (a 1×1 convolution for feature maps). Its variables train
 * with the student and travel in checkpoints, but are not part of the student that is saved.
 */
export class Adapter {
  readonly kernel: tf.Variable;
  readonly bias: tf.Variable;
  /** Whether the two sides are compared flattened (their ranks differ). */
  readonly flat: boolean;

  constructor(studentShape: number[], teacherShape: number[], seed: number, index: number) {
    this.flat =
      studentShape.length !== teacherShape.length || (studentShape.length !== 2 && studentShape.length !== 4);
    const size = (s: number[]) => (this.flat ? s.slice(1).reduce((a, b) => a * b, 1) : s[s.length - 1]!);
    const from = size(studentShape);
    const to = size(teacherShape);
    this.kernel = tf.variable(
      tf.initializers.glorotUniform({ seed: deriveSeed(seed, 'adapter', index) }).apply([from, to]),
      true,
      `adapter_${index}/kernel`,
    );
    this.bias = tf.variable(tf.zeros([to]), true, `adapter_${index}/bias`);
  }

  apply(x: tf.Tensor): tf.Tensor {
    const [from] = this.kernel.shape as [number, number];
    const rows = tf.reshape(x, [-1, from]);
    const out = tf.add(tf.matMul(rows, this.kernel), this.bias);
    return this.flat ? out : tf.reshape(out, [...x.shape.slice(0, -1), this.bias.shape[0]!]);
  }

  get variables(): tf.Variable[] {
    return [this.kernel, this.bias];
  }

  dispose(): void {
    this.kernel.dispose();
    this.bias.dispose();
  }
}

/** FitNets hint: mean squared error between the adapted student layer and the teacher layer. */
export function hintLoss(student: tf.Tensor, teacher: tf.Tensor, adapter: Adapter): tf.Scalar {
  return tf.tidy(() => {
    let s = student;
    let t = teacher;
    if (adapter.flat) {
      s = flatten(s);
      t = flatten(t);
    } else if (s.rank === 4) {
      s = toSpatial(s as tf.Tensor4D, t as tf.Tensor4D);
    }
    return tf.mean(tf.square(tf.sub(adapter.apply(s), t))) as tf.Scalar;
  });
}

/** Attention transfer: mean squared difference of the two attention maps (student resized to the teacher's). */
export function attentionLoss(student: tf.Tensor, teacher: tf.Tensor, p: number): tf.Scalar {
  return tf.tidy(() => {
    if (student.rank !== 4 || teacher.rank !== 4)
      throw new Error('attention transfer needs conv feature maps (rank 4) on both sides');
    const ms = tf.mean(tf.pow(tf.abs(student), p), 3, true) as tf.Tensor4D;
    const mt = tf.mean(tf.pow(tf.abs(teacher), p), 3, true) as tf.Tensor4D;
    const norm = (m: tf.Tensor4D) => {
      const f = flatten(m);
      return tf.div(f, safeNorm(f, 1));
    };
    return tf.mean(tf.square(tf.sub(norm(toSpatial(ms, mt)), norm(mt)))) as tf.Scalar;
  });
}

/** Pairwise Euclidean distances of the rows of e, normalised by their mean over distinct pairs. */
function normalisedDistances(e: tf.Tensor2D): tf.Tensor2D {
  const sq = tf.sum(tf.square(e), 1, true);
  const d2 = tf.relu(tf.sub(tf.add(sq, tf.transpose(sq)), tf.mul(2, tf.matMul(e, e, false, true))));
  const n = e.shape[0];
  const offDiagonal = tf.sub(1, tf.eye(n));
  const d = tf.mul(tf.sqrt(tf.add(d2, 1e-12)), offDiagonal);
  const mean = tf.div(tf.sum(d), Math.max(1, n * (n - 1)));
  return tf.div(d, tf.add(mean, 1e-12)) as tf.Tensor2D;
}

/**
 * cos of the angle at j between e_i − e_j and e_k − e_j, for every triplet: [B, B, B] indexed [j, i, k].
 * From the Gram matrix G = e·eᵀ: ⟨e_i − e_j, e_k − e_j⟩ = G_ik − G_ji − G_jk + G_jj, so the only
 * product is B×B×D and the rest is elementwise on B³ (a batched [B, B, D] product is a naive loop
 * on wasm: 0.65 s a step at B = 128). Rows are centred first (angles do not move) to keep the
 * subtraction precise; a pair closer than float32 can resolve gets angle 0, as a zero difference does.
 */
function angles(e: tf.Tensor2D): tf.Tensor3D {
  const c = tf.sub(e, tf.mean(e, 0, true));
  const G = tf.matMul(c, c, false, true);
  const g = tf.reshape(tf.sum(tf.square(c), 1), [-1, 1]) as tf.Tensor2D; // G_jj as a column
  const d2 = tf.relu(tf.sub(tf.add(g, tf.transpose(g)), tf.mul(2, G))); // [j, i] = |e_i − e_j|²
  const resolvable = tf.step(tf.sub(d2, tf.mul(1e-6, tf.max(g)))); // 1 or 0, gradient 0
  const inverseNorm = tf.div(resolvable, tf.sqrt(tf.add(d2, 1e-12))); // [j, i] = 1 / |e_i − e_j|, or 0
  const dot = tf.add(
    tf.sub(tf.sub(tf.expandDims(G, 0), tf.expandDims(G, 2)), tf.expandDims(G, 1)),
    tf.expandDims(g, 2),
  ); // [j, i, k]
  return tf.mul(tf.mul(dot, tf.expandDims(inverseNorm, 2)), tf.expandDims(inverseNorm, 1)) as tf.Tensor3D;
}

/** Relational KD: smooth-L1 match of normalised pairwise distances and of triplet angles. */
export function rkdLoss(
  student: tf.Tensor,
  teacher: tf.Tensor,
  o: { distance: number; angle: number },
): tf.Scalar {
  return tf.tidy(() => {
    const s = flatten(student);
    const t = flatten(teacher);
    let loss = tf.scalar(0);
    if (o.distance > 0)
      loss = tf.add(
        loss,
        tf.mul(tf.losses.huberLoss(normalisedDistances(t), normalisedDistances(s)), o.distance),
      );
    if (o.angle > 0) loss = tf.add(loss, tf.mul(tf.losses.huberLoss(angles(t), angles(s)), o.angle));
    return loss as tf.Scalar;
  });
}
