import type { LabelledSet } from './data/dataset.js';
import type { Teacher } from './models/teacher.js';

/**
 * Teacher outputs for the training set, filled the first time each example is seen: with no
 * augmentation an example's teacher logits never change, so epochs after the first pay only for
 * the student.
 */
export class TeacherCache {
  private readonly logits: Float32Array;
  private readonly known: Uint8Array;
  constructor(
    private readonly teacher: Teacher,
    private readonly set: LabelledSet,
  ) {
    this.logits = new Float32Array(set.n * teacher.numClasses);
    this.known = new Uint8Array(set.n);
  }

  async batch(idx: Int32Array, x: Float32Array): Promise<Float32Array> {
    const k = this.teacher.numClasses;
    const f = this.set.features;
    const missing: number[] = [];
    for (let i = 0; i < idx.length; i++) if (!this.known[idx[i]!]) missing.push(i);
    if (missing.length > 0) {
      const input =
        missing.length === idx.length ? x.subarray(0, idx.length * f) : new Float32Array(missing.length * f);
      if (missing.length !== idx.length)
        for (const [j, i] of missing.entries()) input.set(x.subarray(i * f, (i + 1) * f), j * f);
      const out = await this.teacher.logits(input, missing.length);
      missing.forEach((i, j) => {
        this.logits.set(out.subarray(j * k, (j + 1) * k), idx[i]! * k);
        this.known[idx[i]!] = 1;
      });
    }
    const rows = new Float32Array(idx.length * k);
    for (let i = 0; i < idx.length; i++)
      rows.set(this.logits.subarray(idx[i]! * k, (idx[i]! + 1) * k), i * k);
    return rows;
  }
}
