/**
 * What a distillation is judged by, computed in plain JavaScript from logits held as
 * Float32Array rows (`n` rows of `k` classes). Kept apart from TensorFlow so that each figure can
 * be checked against a hand computation.
 */

export function softmaxRow(logits: Float32Array, row: number, k: number, out: Float64Array): void {
  let max = -Infinity;
  for (let c = 0; c < k; c++) max = Math.max(max, logits[row * k + c]!);
  let sum = 0;
  for (let c = 0; c < k; c++) {
    const e = Math.exp(logits[row * k + c]! - max);
    out[c] = e;
    sum += e;
  }
  for (let c = 0; c < k; c++) out[c]! /= sum;
}

export function argmaxRow(logits: Float32Array, row: number, k: number): number {
  let best = 0;
  for (let c = 1; c < k; c++) if (logits[row * k + c]! > logits[row * k + best]!) best = c;
  return best;
}

export function accuracy(logits: Float32Array, labels: Int32Array, k: number): number {
  let hit = 0;
  for (let i = 0; i < labels.length; i++) if (argmaxRow(logits, i, k) === labels[i]) hit++;
  return labels.length ? hit / labels.length : 0;
}

/** Mean over rows of −log softmax(logits)[label], in nats. */
export function meanCrossEntropy(logits: Float32Array, labels: Int32Array, k: number): number {
  const p = new Float64Array(k);
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
    softmaxRow(logits, i, k, p);
    total -= Math.log(Math.max(p[labels[i]!]!, 1e-300));
  }
  return labels.length ? total / labels.length : 0;
}

/** Share of rows on which both models pick the same class. */
export function agreement(a: Float32Array, b: Float32Array, n: number, k: number): number {
  let same = 0;
  for (let i = 0; i < n; i++) if (argmaxRow(a, i, k) === argmaxRow(b, i, k)) same++;
  return n ? same / n : 0;
}

/** Mean over rows of KL(softmax(t) || softmax(s)), in nats. */
export function meanKl(teacher: Float32Array, student: Float32Array, n: number, k: number): number {
  const pt = new Float64Array(k);
  const ps = new Float64Array(k);
  let total = 0;
  for (let i = 0; i < n; i++) {
    softmaxRow(teacher, i, k, pt);
    softmaxRow(student, i, k, ps);
    for (let c = 0; c < k; c++)
      if (pt[c]! > 0) total += pt[c]! * (Math.log(pt[c]!) - Math.log(Math.max(ps[c]!, 1e-300)));
  }
  return n ? total / n : 0;
}

/**
 * Expected calibration error: rows binned by confidence (the top softmax probability) into
 * `bins` equal-width bins; the mean over rows of |accuracy − confidence| of their bin.
 */
export function expectedCalibrationError(
  logits: Float32Array,
  labels: Int32Array,
  k: number,
  bins = 15,
): number {
  const n = labels.length;
  const count = new Float64Array(bins);
  const conf = new Float64Array(bins);
  const correct = new Float64Array(bins);
  const p = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    softmaxRow(logits, i, k, p);
    const top = argmaxRow(logits, i, k);
    const c = p[top]!;
    const b = Math.min(bins - 1, Math.floor(c * bins));
    count[b]!++;
    conf[b]! += c;
    if (top === labels[i]) correct[b]!++;
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) if (count[b]! > 0) ece += Math.abs(correct[b]! - conf[b]!) / n;
  return ece;
}

/** Median of the times `fn` takes, after `warmup` untimed calls; in milliseconds. */
export async function medianLatencyMs(
  fn: () => Promise<unknown> | unknown,
  runs = 50,
  warmup = 10,
): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const mid = Math.floor(times.length / 2);
  return times.length % 2 ? times[mid]! : (times[mid - 1]! + times[mid]!) / 2;
}

/** Share of rows whose label is among the `topK` highest logits. */
export function topKAccuracy(logits: Float32Array, labels: Int32Array, k: number, topK: number): number {
  let hit = 0;
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    const own = logits[i * k + label]!;
    // The label is in the top K when fewer than K classes score strictly higher.
    let higher = 0;
    for (let c = 0; c < k && higher < topK; c++) if (logits[i * k + c]! > own) higher++;
    if (higher < topK) hit++;
  }
  return labels.length ? hit / labels.length : 0;
}

/** Accuracy on the examples of each class (classes with no examples are left out). */
export function perClassAccuracy(
  logits: Float32Array,
  labels: Int32Array,
  k: number,
): { class: number; examples: number; accuracy: number }[] {
  const count = new Array<number>(k).fill(0);
  const hit = new Array<number>(k).fill(0);
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    count[l]!++;
    if (argmaxRow(logits, i, k) === l) hit[l]!++;
  }
  const out: { class: number; examples: number; accuracy: number }[] = [];
  for (let c = 0; c < k; c++)
    if (count[c]! > 0) out.push({ class: c, examples: count[c]!, accuracy: hit[c]! / count[c]! });
  return out;
}
