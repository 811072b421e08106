import type { LossSpec } from '@retort/spec';
import type * as tf from '@tensorflow/tfjs';
import { type Adapter, attentionLoss, hintLoss, rkdLoss } from './feature.js';
import { ceLoss, dkdLoss, kdLoss, temperatureAt } from './logit.js';
import { jacobianLoss, pseudoLabelLoss } from './sample.js';

export { Adapter } from './feature.js';
export { ceLoss, dkdLoss, kdLoss, temperatureAt } from './logit.js';
export { inputGradient } from './sample.js';

/** Everything a step's losses may read. Feature maps are keyed by layer (or node) name. */
export interface LossContext {
  studentLogits: tf.Tensor2D;
  labels: tf.Tensor1D;
  teacherLogits?: tf.Tensor2D | undefined;
  studentFeatures: Map<string, tf.Tensor>;
  teacherFeatures: Map<string, tf.Tensor>;
  /** The hint losses' adapters, by the loss's index in the spec. */
  adapters: Map<number, Adapter>;
  /** The student's input gradient at temperature T (computed on demand: it is costly). */
  studentInputGradient?: ((temperature: number) => tf.Tensor) | undefined;
  teacherInputGradient?: tf.Tensor | undefined;
  /** Pseudo-labelling: student and teacher logits on this step's unlabeled batch. */
  unlabeled?: { studentLogits: tf.Tensor2D; teacherLogits: tf.Tensor2D } | undefined;
  /** How far through the run this step is, 0 to 1 (for schedules). */
  progress: number;
}

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`this loss needs ${what}`);
  return v;
}

function feature(
  map: Map<string, tf.Tensor>,
  name: string | undefined,
  fallback: tf.Tensor | undefined,
  who: string,
): tf.Tensor {
  return need(name === undefined ? fallback : map.get(name), `the ${who}'s ${name ?? 'logits'}`);
}

type LossOf<T extends LossSpec['type']> = Extract<LossSpec, { type: T }>;

/** Each loss type and how it is computed from the step's context. */
const LOSSES: { [T in LossSpec['type']]: (l: LossOf<T>, c: LossContext, index: number) => tf.Scalar } = {
  kd: (l, c) =>
    kdLoss(
      c.studentLogits,
      need(c.teacherLogits, 'teacher logits'),
      temperatureAt(l.temperature, c.progress),
    ),
  ce: (_l, c) => ceLoss(c.studentLogits, c.labels),
  dkd: (l, c) => dkdLoss(c.studentLogits, need(c.teacherLogits, 'teacher logits'), c.labels, l),
  hint: (l, c, i) =>
    hintLoss(
      feature(c.studentFeatures, l.student, undefined, 'student'),
      feature(c.teacherFeatures, l.teacher, undefined, 'teacher'),
      need(c.adapters.get(i), 'an adapter'),
    ),
  attention: (l, c) =>
    attentionLoss(
      feature(c.studentFeatures, l.student, undefined, 'student'),
      feature(c.teacherFeatures, l.teacher, undefined, 'teacher'),
      l.p,
    ),
  rkd: (l, c) =>
    rkdLoss(
      feature(c.studentFeatures, l.student, c.studentLogits, 'student'),
      feature(c.teacherFeatures, l.teacher, c.teacherLogits, 'teacher'),
      l,
    ),
  jacobian: (l, c) =>
    jacobianLoss(
      need(c.studentInputGradient, 'input gradients')(l.temperature),
      need(c.teacherInputGradient, "the teacher's input gradients"),
    ),
  'pseudo-label': (l, c) => {
    const u = need(c.unlabeled, 'an unlabeled batch');
    return pseudoLabelLoss(u.studentLogits, u.teacherLogits, l);
  },
};

/** The weighted terms of a spec's losses, in the spec's order. */
export function lossTerms(
  losses: LossSpec[],
  c: LossContext,
): { type: string; weight: number; value: tf.Scalar }[] {
  return losses.map((l, i) => ({
    type: l.type,
    weight: l.weight,
    value: (LOSSES[l.type] as (l: LossSpec, c: LossContext, i: number) => tf.Scalar)(l, c, i),
  }));
}

/** Layer names a spec's losses read, of the student and of the teacher. */
export function featureNames(losses: LossSpec[]): { student: string[]; teacher: string[] } {
  const student = new Set<string>();
  const teacher = new Set<string>();
  for (const l of losses) {
    if (l.type === 'hint' || l.type === 'attention' || l.type === 'rkd') {
      if (l.student) student.add(l.student);
      if (l.teacher) teacher.add(l.teacher);
    }
  }
  return { student: [...student], teacher: [...teacher] };
}
