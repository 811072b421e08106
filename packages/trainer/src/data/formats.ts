import type { ByteSource } from '@retort/spec';
import { type DatasetSpec, RetortError, type UnlabeledSpec } from '@retort/spec';
import { parse as parseCsv } from 'csv-parse/sync';
import { parse as parseNpy } from 'npyjs';
import { type IdxData, parseIdx } from './idx.js';

/** Examples as read from a file: values (one row per example), labels when the file has them. */
export interface RawSet {
  x: IdxData;
  y: Int32Array | undefined;
  n: number;
  /** Shape of one example as stored, e.g. [28, 28] for IDX images or [784] for a CSV row. */
  itemShape: number[];
}

const invalid = (what: string, why: string) => new RetortError('RETORT_DATA_INVALID', `${what}: ${why}`);

function toLabels(values: ArrayLike<number | bigint>, what: string): Int32Array {
  const y = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number(values[i]);
    if (!Number.isInteger(v) || v < 0)
      throw invalid(what, `the label at index ${i} is not a class index (a whole number from 0)`);
    y[i] = v;
  }
  return y;
}

async function readIdx(
  s: { images: string; labels?: string; limit?: number; offset?: number },
  at: string,
  src: ByteSource,
): Promise<RawSet> {
  const images = parseIdx(await src.read(s.images), `${at}/images (${s.images})`, s.limit, s.offset);
  const n = images.shape[0]!;
  let y: Int32Array | undefined;
  if (s.labels) {
    const labels = parseIdx(await src.read(s.labels), `${at}/labels (${s.labels})`, s.limit, s.offset);
    if (labels.shape.length !== 1)
      throw invalid(
        `${at}/labels`,
        `must be one label per example; it has shape [${labels.shape.join(', ')}]`,
      );
    if (labels.shape[0] !== n) throw invalid(at, `${n} images but ${labels.shape[0]} labels`);
    y = toLabels(labels.data, `${at}/labels`);
  }
  return { x: images.data, y, n, itemShape: images.shape.slice(1) };
}

async function readCsv(
  s: { uri: string; label?: string | undefined; limit?: number },
  at: string,
  src: ByteSource,
  labelled: boolean,
): Promise<RawSet> {
  const text = new TextDecoder().decode(await src.read(s.uri));
  let rows: string[][];
  try {
    rows = parseCsv(text, {
      skip_empty_lines: true,
      trim: true,
      to: s.limit === undefined ? undefined : s.limit + 1,
    }) as string[][];
  } catch (e) {
    // The parser's message may quote the file; its code and line say enough to find the problem.
    const { code, lines } = e as { code?: string; lines?: number };
    throw invalid(
      `${at} (${s.uri})`,
      `not valid CSV${code ? ` (${code}${lines ? ` at line ${lines}` : ''})` : ''}`,
    );
  }
  const header = rows.shift();
  if (!header || rows.length === 0)
    throw invalid(`${at} (${s.uri})`, 'needs a header row and at least one example');
  const labelName = s.label ?? 'label';
  const labelCol = header.indexOf(labelName);
  if (labelled && labelCol < 0)
    throw invalid(
      `${at} (${s.uri})`,
      `has no column "${labelName}" in its header row (${header.length} columns)`,
    );
  const featureCols = header.map((_, i) => i).filter((i) => i !== labelCol);
  const x = new Float32Array(rows.length * featureCols.length);
  const labels: number[] = [];
  for (const [r, row] of rows.entries()) {
    if (row.length !== header.length)
      throw invalid(`${at} (${s.uri})`, `row ${r + 2} has ${row.length} values, the header ${header.length}`);
    for (const [j, c] of featureCols.entries()) {
      const v = Number(row[c]);
      if (!Number.isFinite(v))
        throw invalid(`${at} (${s.uri})`, `row ${r + 2}, column ${c + 1}: the value is not a number`);
      x[r * featureCols.length + j] = v;
    }
    if (labelled) labels.push(Number(row[labelCol]));
  }
  return {
    x,
    y: labelled ? toLabels(labels, `${at} (${s.uri}) column "${labelName}"`) : undefined,
    n: rows.length,
    itemShape: [featureCols.length],
  };
}

function readNpyArray(bytes: Uint8Array, what: string) {
  try {
    const own = new Uint8Array(bytes); // a buffer of its own, at offset 0
    return parseNpy(own.buffer);
  } catch {
    throw invalid(what, 'not a NumPy .npy array (a version 1–3 header and little-endian data)');
  }
}

async function readNpy(
  s: { features: string; labels?: string; limit?: number },
  at: string,
  src: ByteSource,
): Promise<RawSet> {
  const f = readNpyArray(await src.read(s.features), `${at}/features (${s.features})`);
  if (f.fortranOrder)
    throw invalid(`${at}/features`, 'is in Fortran order; save it C-ordered (numpy.ascontiguousarray)');
  const shape = f.shape.map(Number);
  const n = Math.min(shape[0]!, s.limit ?? Infinity);
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  const data = f.data as unknown as ArrayLike<number | bigint>;
  const x =
    data instanceof Uint8Array
      ? data.subarray(0, n * per)
      : Float32Array.from({ length: n * per }, (_, i) => Number(data[i]));
  let y: Int32Array | undefined;
  if (s.labels) {
    const l = readNpyArray(await src.read(s.labels), `${at}/labels (${s.labels})`);
    const ls = l.shape.map(Number);
    if (ls.length !== 1)
      throw invalid(`${at}/labels`, `must be one label per example; it has shape [${ls.join(', ')}]`);
    if (Math.min(ls[0]!, s.limit ?? Infinity) !== n) throw invalid(at, `${n} examples but ${ls[0]} labels`);
    y = toLabels(
      Array.from({ length: n }, (_, i) => (l.data as unknown as ArrayLike<number | bigint>)[i]!),
      `${at}/labels`,
    );
  }
  return { x, y, n, itemShape: shape.slice(1) };
}

async function readJsonl(
  s: { uri: string; features?: string | undefined; label?: string | undefined; limit?: number },
  at: string,
  src: ByteSource,
  labelled: boolean,
): Promise<RawSet> {
  const lines = new TextDecoder()
    .decode(await src.read(s.uri))
    .split('\n')
    .filter((l) => l.trim());
  const take = lines.slice(0, s.limit ?? lines.length);
  const fName = s.features ?? 'features';
  const lName = s.label ?? 'label';
  let per = -1;
  let x = new Float32Array(0);
  const labels: number[] = [];
  for (const [i, line] of take.entries()) {
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw invalid(`${at} (${s.uri})`, `line ${i + 1} is not JSON`);
    }
    const raw = obj[fName];
    if (!Array.isArray(raw)) throw invalid(`${at} (${s.uri})`, `line ${i + 1} has no array "${fName}"`);
    const values = (raw as unknown[]).flat(8) as unknown[];
    if (per < 0) {
      per = values.length;
      x = new Float32Array(take.length * per);
    }
    if (values.length !== per)
      throw invalid(`${at} (${s.uri})`, `line ${i + 1} has ${values.length} values, line 1 has ${per}`);
    for (const [j, v] of values.entries()) {
      if (typeof v !== 'number')
        throw invalid(`${at} (${s.uri})`, `line ${i + 1}: "${fName}" holds a non-number`);
      x[i * per + j] = v;
    }
    if (labelled) labels.push(obj[lName] as number);
  }
  if (take.length === 0) throw invalid(`${at} (${s.uri})`, 'has no examples');
  return {
    x,
    y: labelled ? toLabels(labels, `${at} (${s.uri}) field "${lName}"`) : undefined,
    n: take.length,
    itemShape: [per],
  };
}

/** Reads a labelled set in any of the supported formats. */
export async function readLabelled(
  spec: DatasetSpec,
  at: string,
  src: ByteSource,
): Promise<RawSet & { y: Int32Array }> {
  const raw =
    spec.format === 'idx'
      ? await readIdx(spec, at, src)
      : spec.format === 'csv'
        ? await readCsv(spec, at, src, true)
        : spec.format === 'npy'
          ? await readNpy(spec, at, src)
          : await readJsonl(spec, at, src, true);
  return raw as RawSet & { y: Int32Array };
}

/** Reads examples without labels (for pseudo-labelling). */
export async function readUnlabeled(spec: UnlabeledSpec, at: string, src: ByteSource): Promise<RawSet> {
  switch (spec.format) {
    case 'idx':
      return readIdx(spec, at, src);
    case 'csv':
      return readCsv(spec, at, src, false);
    case 'npy':
      return readNpy(spec, at, src);
    case 'jsonl':
      return readJsonl(spec, at, src, false);
  }
}
