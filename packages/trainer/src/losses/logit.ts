import type { TemperatureSpec } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';

/**
 * Hinton et al.'s distillation loss: KL(softmax(t/T) || softmax(s/T)) per example, averaged over
 * the batch and scaled by T² so that its gradients keep their size as T changes.
 */
export function kdLoss(
  studentLogits: tf.Tensor2D,
  teacherLogits: tf.Tensor2D,
  temperature: number,
): tf.Scalar {
  return tf.tidy(() => {
    const logPt = tf.logSoftmax(tf.div(teacherLogits, temperature));
    const logPs = tf.logSoftmax(tf.div(studentLogits, temperature));
    const kl = tf.sum(tf.mul(tf.exp(logPt), tf.sub(logPt, logPs)), 1);
    return tf.mul(tf.mean(kl), temperature * temperature) as tf.Scalar;
  });
}

/** Cross-entropy of the student's logits with integer labels, averaged over the batch. */
export function ceLoss(studentLogits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const numClasses = studentLogits.shape[1];
    const oneHot = tf.oneHot(labels, numClasses);
    return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(studentLogits)), 1))) as tf.Scalar;
  });
}

/**
 * Decoupled KD (Zhao et al., 2022). With p = softmax(z / T) for teacher and student and t the label:
 *   TCKD = KL([p_t, 1 − p_t] of the teacher || the same of the student)
 *   NCKD = KL(softmax over the non-target classes, teacher || student)
 *   loss = (α·TCKD + β·NCKD) · T², averaged over the batch.
 */
export function dkdLoss(
  studentLogits: tf.Tensor2D,
  teacherLogits: tf.Tensor2D,
  labels: tf.Tensor1D,
  o: { alpha: number; beta: number; temperature: number },
): tf.Scalar {
  return tf.tidy(() => {
    const T = o.temperature;
    const gt = tf.oneHot(labels, studentLogits.shape[1]);
    const ps = tf.softmax(tf.div(studentLogits, T));
    const pt = tf.softmax(tf.div(teacherLogits, T));
    const eps = 1e-7;
    const binary = (p: tf.Tensor) => {
      const target = tf.sum(tf.mul(p, gt), 1, true);
      return tf.concat([target, tf.sub(1, target)], 1);
    };
    const bt = tf.clipByValue(binary(pt), eps, 1);
    const bs = tf.clipByValue(binary(ps), eps, 1);
    const tckd = tf.mean(tf.sum(tf.mul(bt, tf.sub(tf.log(bt), tf.log(bs))), 1));
    // The target class pushed to −∞ (a large negative offset) leaves the distribution over the others.
    const mask = tf.mul(gt, 1000);
    const logQt = tf.logSoftmax(tf.sub(tf.div(teacherLogits, T), mask));
    const logQs = tf.logSoftmax(tf.sub(tf.div(studentLogits, T), mask));
    const nckd = tf.mean(tf.sum(tf.mul(tf.mul(tf.exp(logQt), tf.sub(1, gt)), tf.sub(logQt, logQs)), 1));
    return tf.mul(tf.add(tf.mul(tckd, o.alpha), tf.mul(nckd, o.beta)), T * T) as tf.Scalar;
  });
}

/** The temperature at `progress` (0 at the first step, 1 at the last). */
export function temperatureAt(t: TemperatureSpec, progress: number): number {
  if (typeof t === 'number') return t;
  const f = t.schedule === 'cosine' ? (1 - Math.cos(Math.PI * progress)) / 2 : progress;
  return t.from + (t.to - t.from) * f;
}
