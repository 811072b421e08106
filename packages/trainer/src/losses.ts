import type { LossSpec } from '@retort/spec';
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

export interface LossInputs {
  studentLogits: tf.Tensor2D;
  labels: tf.Tensor1D;
  teacherLogits?: tf.Tensor2D | undefined;
}

/** The weighted terms of a spec's losses, in the spec's order. */
export function lossTerms(
  losses: LossSpec[],
  inputs: LossInputs,
): { type: string; weight: number; value: tf.Scalar }[] {
  return losses.map((l) => {
    if (l.type === 'kd') {
      if (!inputs.teacherLogits) throw new Error('kd loss needs teacher logits');
      return {
        type: 'kd',
        weight: l.weight,
        value: kdLoss(inputs.studentLogits, inputs.teacherLogits, l.temperature),
      };
    }
    return { type: 'ce', weight: l.weight, value: ceLoss(inputs.studentLogits, inputs.labels) };
  });
}
