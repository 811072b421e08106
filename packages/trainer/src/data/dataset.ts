import { type IdxDatasetSpec, RetortError, type RunSpec } from '@retort/spec';
import type { ByteSource } from '../io.js';
import { deriveSeed, permutation } from '../random.js';
import { type IdxData, parseIdx } from './idx.js';

/** A labelled set held in memory as stored (bytes for images); scaled to float one batch at a time. */
export interface LabelledSet {
  x: IdxData;
  y: Int32Array;
  n: number;
  /** Values per example. */
  features: number;
}

export interface Datasets {
  train: LabelledSet;
  validation: LabelledSet;
  /** Shape of one example as the model sees it, e.g. [28, 28, 1]. */
  inputShape: number[];
  numClasses: number;
  scale: number;
}

async function loadIdxSet(
  spec: IdxDatasetSpec,
  at: string,
  src: ByteSource,
): Promise<{ set: LabelledSet; itemShape: number[] }> {
  const [imagesBytes, labelsBytes] = await Promise.all([src.read(spec.images), src.read(spec.labels)]);
  const images = parseIdx(imagesBytes, `${at}/images (${spec.images})`, spec.limit);
  const labels = parseIdx(labelsBytes, `${at}/labels (${spec.labels})`, spec.limit);
  if (labels.shape.length !== 1) {
    throw new RetortError(
      'RETORT_DATA_INVALID',
      `${at}/labels must be one label per example; it has shape [${labels.shape.join(', ')}]`,
    );
  }
  if (images.shape[0] !== labels.shape[0]) {
    throw new RetortError(
      'RETORT_DATA_INVALID',
      `${at}: ${images.shape[0]} images but ${labels.shape[0]} labels`,
    );
  }
  const n = images.shape[0]!;
  const y = Int32Array.from(labels.data as ArrayLike<number>);
  for (let i = 0; i < n; i++) {
    const v = y[i]!;
    if (v < 0 || !Number.isInteger(v))
      throw new RetortError(
        'RETORT_DATA_INVALID',
        `${at}/labels: label ${v} at index ${i} is not a class index`,
      );
  }
  const features = images.shape.slice(1).reduce((a, b) => a * b, 1);
  return { set: { x: images.data, y, n, features }, itemShape: images.shape.slice(1) };
}

/** The examples at `idx` of `set`, as a new set (used for a validation split). */
export function subset(set: LabelledSet, idx: ArrayLike<number>): LabelledSet {
  const { features } = set;
  const x = new (set.x.constructor as new (n: number) => IdxData)(idx.length * features);
  const y = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    const j = idx[i]!;
    x.set(set.x.subarray(j * features, (j + 1) * features), i * features);
    y[i] = set.y[j]!;
  }
  return { x, y, n: idx.length, features };
}

/** Loads the training and validation sets a spec names, checking what a run needs of them. */
export async function loadDatasets(spec: RunSpec, src: ByteSource): Promise<Datasets> {
  const { set: full, itemShape } = await loadIdxSet(spec.data.train, '/data/train', src);
  let train = full;
  let validation: LabelledSet;
  const v = spec.data.validation;
  if ('split' in v) {
    const k = Math.round(full.n * v.split);
    if (k < 1 || k >= full.n) {
      throw new RetortError(
        'RETORT_DATA_INVALID',
        `/data/validation/split ${v.split} of ${full.n} examples leaves an empty set`,
      );
    }
    const order = permutation(full.n, deriveSeed(spec.training.seed, 'split'));
    validation = subset(full, order.subarray(0, k));
    train = subset(full, order.subarray(k).sort());
  } else {
    const loaded = await loadIdxSet(v, '/data/validation', src);
    if (loaded.set.features !== full.features) {
      throw new RetortError(
        'RETORT_DATA_INVALID',
        `/data/validation has ${loaded.set.features} values per example but /data/train has ${full.features}`,
      );
    }
    validation = loaded.set;
  }
  const inputShape = spec.data.preprocess.shape ?? (itemShape.length === 2 ? [...itemShape, 1] : itemShape);
  const inputSize = inputShape.reduce((a, b) => a * b, 1);
  if (inputSize !== full.features) {
    throw new RetortError(
      'RETORT_DATA_INVALID',
      `/data/preprocess/shape [${inputShape.join(', ')}] holds ${inputSize} values but each example has ${full.features}`,
    );
  }
  let maxLabel = 0;
  for (const set of [train, validation]) for (const l of set.y) if (l > maxLabel) maxLabel = l;
  const numClasses = Math.max(2, maxLabel + 1);
  if (numClasses > 10_000)
    throw new RetortError('RETORT_DATA_INVALID', `labels go up to ${maxLabel}; at most 10000 classes`);
  return { train, validation, inputShape, numClasses, scale: spec.data.preprocess.scale };
}

/** Fills `out` with the examples at `idx`, multiplied by `scale`. */
export function gatherScaled(
  set: LabelledSet,
  idx: ArrayLike<number>,
  scale: number,
  out: Float32Array,
): void {
  const { features, x } = set;
  for (let i = 0; i < idx.length; i++) {
    const src = idx[i]! * features;
    const dst = i * features;
    for (let k = 0; k < features; k++) out[dst + k] = x[src + k]! * scale;
  }
}

/** Examples without labels (for pseudo-labelling), shaped like the training set's. */
export async function loadUnlabeled(
  spec: RunSpec,
  src: ByteSource,
  features: number,
): Promise<LabelledSet | undefined> {
  const u = spec.data.unlabeled;
  if (!u) return undefined;
  const images = parseIdx(await src.read(u.images), `/data/unlabeled/images (${u.images})`, u.limit);
  const n = images.shape[0]!;
  const per = images.shape.slice(1).reduce((a, b) => a * b, 1);
  if (per !== features) {
    throw new RetortError(
      'RETORT_DATA_INVALID',
      `/data/unlabeled has ${per} values per example but /data/train has ${features}`,
    );
  }
  if (n === 0) throw new RetortError('RETORT_DATA_INVALID', '/data/unlabeled has no examples');
  return { x: images.data, y: new Int32Array(n), n, features };
}
