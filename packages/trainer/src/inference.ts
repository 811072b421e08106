import * as tf from '@tensorflow/tfjs';
import { type Datasets, gatherScaled, type LabelledSet } from './data/dataset.js';
import type { Teacher } from './models/teacher.js';

const EVAL_BATCH = 512;

/**
 * Runs `logitsOf` over a whole set in batches of scaled examples and gathers its outputs
 * (`k` per example) into one Float32Array.
 */
async function overSet(
  set: LabelledSet,
  d: Datasets,
  k: number,
  logitsOf: (x: Float32Array, n: number) => Promise<Float32Array>,
): Promise<Float32Array> {
  const out = new Float32Array(set.n * k);
  const buf = new Float32Array(EVAL_BATCH * set.features);
  const idx = new Int32Array(EVAL_BATCH);
  for (let start = 0; start < set.n; start += EVAL_BATCH) {
    const m = Math.min(EVAL_BATCH, set.n - start);
    for (let i = 0; i < m; i++) idx[i] = start + i;
    gatherScaled(set, idx.subarray(0, m), d.preprocess, buf);
    out.set(await logitsOf(buf.subarray(0, m * set.features), m), start * k);
  }
  return out;
}

/** Logits of `model` for a whole set. */
export function predictLogits(
  model: tf.LayersModel,
  set: LabelledSet,
  d: Datasets,
  numClasses: number,
): Promise<Float32Array> {
  return overSet(set, d, numClasses, async (x, n) => {
    const y = tf.tidy(() => model.predict(tf.tensor(x, [n, ...d.inputShape])) as tf.Tensor);
    const v = (await y.data()) as Float32Array;
    y.dispose();
    return v;
  });
}

/** Teacher logits for a whole set. */
export function teacherLogits(teacher: Teacher, set: LabelledSet, d: Datasets): Promise<Float32Array> {
  return overSet(set, d, teacher.numClasses, (x, n) => teacher.logits(x, n));
}
