import * as tf from '@tensorflow/tfjs';
import { type Datasets, gatherScaled, type LabelledSet } from './data/dataset.js';
import type { Teacher } from './models/teacher.js';

const EVAL_BATCH = 512;

/** Logits of `model` for a whole set, in batches, as one Float32Array. */
export async function predictLogits(
  model: tf.LayersModel,
  set: LabelledSet,
  d: Datasets,
  numClasses: number,
): Promise<Float32Array> {
  const out = new Float32Array(set.n * numClasses);
  const buf = new Float32Array(EVAL_BATCH * set.features);
  const idx = new Int32Array(EVAL_BATCH);
  for (let start = 0; start < set.n; start += EVAL_BATCH) {
    const m = Math.min(EVAL_BATCH, set.n - start);
    for (let i = 0; i < m; i++) idx[i] = start + i;
    gatherScaled(set, idx.subarray(0, m), d.scale, buf);
    const y = tf.tidy(
      () => model.predict(tf.tensor(buf.subarray(0, m * set.features), [m, ...d.inputShape])) as tf.Tensor,
    );
    out.set((await y.data()) as Float32Array, start * numClasses);
    y.dispose();
  }
  return out;
}

/** Teacher logits for a whole set, in batches. */
export async function teacherLogits(teacher: Teacher, set: LabelledSet, d: Datasets): Promise<Float32Array> {
  const out = new Float32Array(set.n * teacher.numClasses);
  const buf = new Float32Array(EVAL_BATCH * set.features);
  const idx = new Int32Array(EVAL_BATCH);
  for (let start = 0; start < set.n; start += EVAL_BATCH) {
    const m = Math.min(EVAL_BATCH, set.n - start);
    for (let i = 0; i < m; i++) idx[i] = start + i;
    gatherScaled(set, idx.subarray(0, m), d.scale, buf);
    out.set(await teacher.logits(buf.subarray(0, m * set.features), m), start * teacher.numClasses);
  }
  return out;
}
