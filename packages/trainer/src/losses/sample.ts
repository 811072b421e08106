import * as tf from '@tensorflow/tfjs';
import { registerSecondOrderGradients } from '../gradients.js';
import { safeNorm } from './feature.js';

// The input gradient is differentiated again in the student's weights.
registerSecondOrderGradients();

/**
 * Gradient matching (Srinivas & Fleuret, 2018): g = ∂ log softmax(z / T)[label] / ∂x for each
 * example, normalised to unit length; the loss is the mean squared distance between the student's
 * and the teacher's. Training through it takes second-order gradients of the student.
 */
export function jacobianLoss(studentGradient: tf.Tensor, teacherGradient: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const unit = (g: tf.Tensor) => {
      const flat = tf.reshape(g, [g.shape[0]!, -1]);
      return tf.div(flat, safeNorm(flat, 1));
    };
    return tf.mean(tf.sum(tf.square(tf.sub(unit(studentGradient), unit(teacherGradient))), 1)) as tf.Scalar;
  });
}

/**
 * The student's input gradient of log softmax(apply(x) / T) at the labels, differentiable in its
 * weights. Written as a vector–Jacobian product, g = (∂z/∂x)ᵀ (e_label − softmax(z/T)) / T, with the
 * vector computed outside the inner gradient, so that no gradient formula the weights' gradient
 * passes through depends on a saved op output (see gradients.ts).
 */
export function inputGradient(
  apply: (x: tf.Tensor) => tf.Tensor,
  x: tf.Tensor,
  onehot: tf.Tensor,
  temperature: number,
): tf.Tensor {
  const z = apply(x);
  const v = tf.div(tf.sub(onehot, tf.softmax(tf.div(z, temperature))), temperature);
  // A separate copy of x: differentiating with respect to x itself would also follow v's
  // dependence on x (the tape holds z = apply(x)), which the product's derivative must not.
  const at = tf.clone(x);
  return tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(apply(xi), v)))(at);
}

/**
 * Sample distillation on examples without labels. Hard: cross-entropy with the teacher's top class,
 * over the examples it gives at least `threshold` probability (0 when there are none). Soft: KD
 * against its distribution at temperature T, scaled by T².
 */
export function pseudoLabelLoss(
  studentLogits: tf.Tensor2D,
  teacherLogits: tf.Tensor2D,
  o: { mode: 'hard' | 'soft'; threshold: number; temperature: number },
): tf.Scalar {
  return tf.tidy(() => {
    if (o.mode === 'soft') {
      const T = o.temperature;
      const logPt = tf.logSoftmax(tf.div(teacherLogits, T));
      const logPs = tf.logSoftmax(tf.div(studentLogits, T));
      return tf.mul(tf.mean(tf.sum(tf.mul(tf.exp(logPt), tf.sub(logPt, logPs)), 1)), T * T) as tf.Scalar;
    }
    const pt = tf.softmax(teacherLogits);
    const confident = tf.cast(tf.greaterEqual(tf.max(pt, 1), o.threshold), 'float32');
    const target = tf.oneHot(tf.argMax(pt, 1), teacherLogits.shape[1]);
    const ce = tf.neg(tf.sum(tf.mul(target, tf.logSoftmax(studentLogits)), 1));
    return tf.div(tf.sum(tf.mul(ce, confident)), tf.maximum(tf.sum(confident), 1)) as tf.Scalar;
  });
}
