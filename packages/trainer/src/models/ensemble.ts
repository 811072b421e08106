import { createHash } from 'node:crypto';
import { RetortError } from '@retort/spec';
import type { Teacher } from './teacher.js';

/** log Σ_i w_i softmax(z_i), row by row: the logits of the weighted mixture of the teachers' distributions. */
function mixture(all: Float32Array[], weights: number[], k: number): Float32Array {
  const n = all[0]!.length / k;
  const out = new Float32Array(n * k);
  const p = new Float64Array(k);
  for (let r = 0; r < n; r++) {
    p.fill(0);
    for (const [i, z] of all.entries()) {
      let max = -Infinity;
      for (let c = 0; c < k; c++) max = Math.max(max, z[r * k + c]!);
      let sum = 0;
      for (let c = 0; c < k; c++) sum += Math.exp(z[r * k + c]! - max);
      for (let c = 0; c < k; c++) p[c]! += (weights[i]! * Math.exp(z[r * k + c]! - max)) / sum;
    }
    for (let c = 0; c < k; c++) out[r * k + c] = Math.log(Math.max(p[c]!, 1e-30));
  }
  return out;
}

/**
 * Several teachers as one: their probabilities averaged by weight (normalised to sum to 1); the
 * mixture's log-probabilities serve as its logits. Intermediate outputs and input gradients come
 * from the first teacher.
 */
export function ensembleTeacher(teachers: Teacher[], weights: number[]): Teacher {
  const k = teachers[0]!.numClasses;
  if (teachers.some((t) => t.numClasses !== k)) {
    throw new RetortError(
      'RETORT_MODEL_INCOMPATIBLE',
      `the teachers disagree on the number of classes (${teachers.map((t) => t.numClasses).join(', ')})`,
    );
  }
  const total = weights.reduce((a, b) => a + b, 0);
  const w = weights.map((x) => x / total);
  const first = teachers[0]!;
  const ensemble: Teacher = {
    runtime: [...new Set(teachers.map((t) => t.runtime))].join('+'),
    params: teachers.reduce((n, t) => n + t.params, 0),
    numClasses: k,
    fingerprint: createHash('sha256')
      .update(JSON.stringify(teachers.map((t, i) => [t.fingerprint, w[i]])))
      .digest('hex'),
    async logits(x, n) {
      return mixture(await Promise.all(teachers.map((t) => t.logits(x, n))), w, k);
    },
    async forward(x, n) {
      const [head, rest] = await Promise.all([
        first.forward(x, n),
        Promise.all(teachers.slice(1).map((t) => t.logits(x, n))),
      ]);
      return { logits: mixture([head.logits, ...rest], w, k), features: head.features };
    },
    dispose: () => {
      for (const t of teachers) t.dispose();
    },
  };
  if (first.inputGradients) ensemble.inputGradients = first.inputGradients.bind(first);
  return ensemble;
}
