import { gatherScaled, type LabelledSet, type Preprocess } from './data/dataset.js';
import type { Teacher } from './models/teacher.js';

/** Examples are sent to the teacher in fixed blocks of the set's order. */
export const TEACHER_BLOCK = 256;
const MAGIC = 'RTTC1';

/**
 * Teacher logits for a set, computed once per example and then read back: with no augmentation
 * an example's teacher logits never change, so epochs after the first pay only for the student.
 *
 * The teacher always sees an example within the same fixed block of the set (examples
 * 256k … 256k + 255), whatever batch first asked for it. Its outputs therefore do not depend on the
 * data order, so a resumed run, or a run reading a cache another run stored, gets bit-for-bit the
 * logits a fresh run computes.
 */
export class TeacherCache {
  private readonly logits: Float32Array;
  private readonly known: Uint8Array;
  private remaining: number;

  constructor(
    private readonly teacher: Teacher,
    private readonly set: LabelledSet,
    private readonly preprocess: Preprocess,
  ) {
    this.logits = new Float32Array(set.n * teacher.numClasses);
    this.known = new Uint8Array(Math.ceil(set.n / TEACHER_BLOCK));
    this.remaining = this.known.length;
  }

  /** Whether every example's logits are in. */
  get complete(): boolean {
    return this.remaining === 0;
  }

  private async fill(block: number): Promise<void> {
    const start = block * TEACHER_BLOCK;
    const m = Math.min(TEACHER_BLOCK, this.set.n - start);
    const x = new Float32Array(m * this.set.features);
    gatherScaled(
      this.set,
      Int32Array.from({ length: m }, (_, i) => start + i),
      this.preprocess,
      x,
    );
    this.logits.set(await this.teacher.logits(x, m), start * this.teacher.numClasses);
    this.known[block] = 1;
    this.remaining--;
  }

  /** The teacher's logits for the examples at `idx`, as rows. */
  async batch(idx: ArrayLike<number>): Promise<Float32Array> {
    const k = this.teacher.numClasses;
    for (let i = 0; i < idx.length; i++) {
      const block = Math.floor(idx[i]! / TEACHER_BLOCK);
      if (!this.known[block]) await this.fill(block);
    }
    const rows = new Float32Array(idx.length * k);
    for (let i = 0; i < idx.length; i++)
      rows.set(this.logits.subarray(idx[i]! * k, (idx[i]! + 1) * k), i * k);
    return rows;
  }

  /** The whole cache as bytes: a header naming its key and size, then the logits. */
  serialize(key: string): Uint8Array {
    const header = new TextEncoder().encode(
      JSON.stringify({ magic: MAGIC, key, n: this.set.n, k: this.teacher.numClasses }),
    );
    const out = new Uint8Array(4 + header.byteLength + this.logits.byteLength);
    new DataView(out.buffer).setUint32(0, header.byteLength);
    out.set(header, 4);
    out.set(
      new Uint8Array(this.logits.buffer, this.logits.byteOffset, this.logits.byteLength),
      4 + header.byteLength,
    );
    return out;
  }

  /** Takes in a stored cache; false (and nothing changed) unless it is this key's and this size. */
  load(bytes: Uint8Array, key: string): boolean {
    try {
      const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
      const h = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + len))) as {
        magic: string;
        key: string;
        n: number;
        k: number;
      };
      if (h.magic !== MAGIC || h.key !== key || h.n !== this.set.n || h.k !== this.teacher.numClasses)
        return false;
      const body = new Uint8Array(bytes.subarray(4 + len)); // a copy, aligned for Float32Array
      if (body.byteLength !== this.logits.byteLength) return false;
      this.logits.set(new Float32Array(body.buffer));
      this.known.fill(1);
      this.remaining = 0;
      return true;
    } catch {
      return false;
    }
  }
}
