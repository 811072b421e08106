import { gatherScaled, type LabelledSet, type Preprocess } from './data/dataset.js';
import { type FeatureBatch, product, type Teacher } from './models/teacher.js';

/** Examples are sent to the teacher in fixed blocks of the set's order. */
export const TEACHER_BLOCK = 256;
const MAGIC = 'RTTC2';

/** What is kept per example besides the logits. */
export interface CachePlan {
  /** The per-example shapes of the teacher's read layers, in the order `Teacher.forward` gives them. */
  featureShapes: number[][];
  /** Input gradients at this temperature (gradient matching), if wanted. */
  gradientTemperature?: number | undefined;
}

/** A batch's teacher outputs, as rows in the order of the requested examples. */
export interface CachedBatch {
  logits: Float32Array;
  features: FeatureBatch[];
  grad?: Float32Array;
}

interface Part {
  name: string;
  /** Floats per example. */
  size: number;
  /** Per-example shape (features). */
  shape?: number[];
  values: Float32Array;
}

/**
 * Teacher outputs for a set (logits, the read layers' outputs, input gradients), computed once per
 * example and then read back: with no augmentation an example's teacher outputs never change, so
 * epochs after the first pay only for the student.
 *
 * The teacher always sees an example within the same fixed block of the set (examples
 * 256k … 256k + 255), whatever batch first asked for it. Its outputs therefore do not depend on the
 * data order, so a resumed run, or a run reading a cache another run stored, gets bit-for-bit the
 * outputs a fresh run computes.
 */
export class TeacherCache {
  private readonly parts: Part[];
  private readonly known: Uint8Array;
  private remaining: number;

  constructor(
    private readonly teacher: Teacher,
    private readonly set: LabelledSet,
    private readonly preprocess: Preprocess,
    private readonly plan: CachePlan = { featureShapes: [] },
  ) {
    this.parts = TeacherCache.layout(teacher, set, plan).map((p) => ({
      ...p,
      values: new Float32Array(set.n * p.size),
    }));
    this.known = new Uint8Array(Math.ceil(set.n / TEACHER_BLOCK));
    this.remaining = this.known.length;
  }

  private static layout(teacher: Teacher, set: LabelledSet, plan: CachePlan) {
    return [
      { name: 'logits', size: teacher.numClasses },
      ...plan.featureShapes.map((shape, i) => ({ name: `feature:${i}`, size: product(shape), shape })),
      ...(plan.gradientTemperature !== undefined
        ? [{ name: `input-gradient@${plan.gradientTemperature}`, size: set.features }]
        : []),
    ];
  }

  /** The memory a cache of this plan takes, to decide whether to keep one. */
  static bytes(teacher: Teacher, set: LabelledSet, plan: CachePlan): number {
    return TeacherCache.layout(teacher, set, plan).reduce((a, p) => a + 4 * p.size * set.n, 0);
  }

  /** What the cached values depend on besides the teacher and the data (part of the cache key). */
  static describe(teacher: Teacher, set: LabelledSet, plan: CachePlan): string {
    return TeacherCache.layout(teacher, set, plan)
      .map((p) => `${p.name}[${p.size}]`)
      .join(',');
  }

  /** Whether every example's outputs are in. */
  get complete(): boolean {
    return this.remaining === 0;
  }

  private async fill(block: number): Promise<void> {
    const start = block * TEACHER_BLOCK;
    const m = Math.min(TEACHER_BLOCK, this.set.n - start);
    const x = new Float32Array(m * this.set.features);
    const idx = Int32Array.from({ length: m }, (_, i) => start + i);
    gatherScaled(this.set, idx, this.preprocess, x);
    const { featureShapes, gradientTemperature } = this.plan;
    let p = 0;
    if (featureShapes.length === 0) {
      this.parts[p++]!.values.set(await this.teacher.logits(x, m), start * this.teacher.numClasses);
    } else {
      const out = await this.teacher.forward(x, m);
      this.parts[p++]!.values.set(out.logits, start * this.teacher.numClasses);
      for (const f of out.features) {
        const part = this.parts[p++]!;
        if (f.data.length !== m * part.size)
          throw new Error(`teacher layer output changed size: ${f.shape.join('×')} for ${m} examples`);
        part.values.set(f.data, start * part.size);
      }
    }
    if (gradientTemperature !== undefined) {
      const part = this.parts[p++]!;
      const labels = this.set.y.subarray(start, start + m);
      part.values.set(
        await this.teacher.inputGradients!(x, m, labels, gradientTemperature),
        start * part.size,
      );
    }
    this.known[block] = 1;
    this.remaining--;
  }

  /** The teacher's outputs for the examples at `idx`. */
  async outputs(idx: ArrayLike<number>): Promise<CachedBatch> {
    for (let i = 0; i < idx.length; i++) {
      const block = Math.floor(idx[i]! / TEACHER_BLOCK);
      if (!this.known[block]) await this.fill(block);
    }
    const rows = (part: Part) => {
      const out = new Float32Array(idx.length * part.size);
      for (let i = 0; i < idx.length; i++)
        out.set(part.values.subarray(idx[i]! * part.size, (idx[i]! + 1) * part.size), i * part.size);
      return out;
    };
    const [logits, ...rest] = this.parts;
    const features = rest
      .filter((p) => p.shape)
      .map((p) => ({ data: rows(p), shape: [idx.length, ...p.shape!] }));
    const gradPart = rest.find((p) => !p.shape);
    return { logits: rows(logits!), features, ...(gradPart ? { grad: rows(gradPart) } : {}) };
  }

  /** The teacher's logits for the examples at `idx`, as rows. */
  async batch(idx: ArrayLike<number>): Promise<Float32Array> {
    return (await this.outputs(idx)).logits;
  }

  /** The whole cache as bytes: a header naming its key and layout, then each part's values. */
  serialize(key: string): Uint8Array {
    const header = new TextEncoder().encode(
      JSON.stringify({ magic: MAGIC, key, n: this.set.n, parts: this.parts.map((p) => [p.name, p.size]) }),
    );
    const body = this.parts.reduce((a, p) => a + p.values.byteLength, 0);
    const out = new Uint8Array(4 + header.byteLength + body);
    new DataView(out.buffer).setUint32(0, header.byteLength);
    out.set(header, 4);
    let at = 4 + header.byteLength;
    for (const p of this.parts) {
      out.set(new Uint8Array(p.values.buffer, p.values.byteOffset, p.values.byteLength), at);
      at += p.values.byteLength;
    }
    return out;
  }

  /** Takes in a stored cache; false (and nothing changed) unless it is this key's, layout and size. */
  load(bytes: Uint8Array, key: string): boolean {
    try {
      const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
      const h = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + len))) as {
        magic: string;
        key: string;
        n: number;
        parts: [string, number][];
      };
      const layout = JSON.stringify(this.parts.map((p) => [p.name, p.size]));
      if (h.magic !== MAGIC || h.key !== key || h.n !== this.set.n || JSON.stringify(h.parts) !== layout)
        return false;
      const body = new Uint8Array(bytes.subarray(4 + len)); // a copy, aligned for Float32Array
      if (body.byteLength !== this.parts.reduce((a, p) => a + p.values.byteLength, 0)) return false;
      let at = 0;
      for (const p of this.parts) {
        p.values.set(new Float32Array(body.buffer, at, p.values.length));
        at += p.values.byteLength;
      }
      this.known.fill(1);
      this.remaining = 0;
      return true;
    } catch {
      return false;
    }
  }
}
