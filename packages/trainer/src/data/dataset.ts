import type { ByteSource } from '@retort/spec';
import { RetortError, type RunSpec } from '@retort/spec';
import { deriveSeed, permutation } from '../random.js';
import { type RawSet, readLabelled, readUnlabeled } from './formats.js';
import type { IdxData } from './idx.js';

/** A labelled set held in memory as stored (bytes for images); scaled to float one batch at a time. */
export interface LabelledSet {
  x: IdxData;
  y: Int32Array;
  n: number;
  /** Values per example. */
  features: number;
}

/** How stored values become model inputs: v · scale, then (− mean) / std per channel. */
export interface Preprocess {
  scale: number;
  /** Per channel (the last axis of an example), when normalising; a single value covers all. */
  mean?: Float32Array;
  std?: Float32Array;
}

export interface Datasets {
  train: LabelledSet;
  validation: LabelledSet;
  /** Shape of one example as the model sees it, e.g. [28, 28, 1]. */
  inputShape: number[];
  numClasses: number;
  preprocess: Preprocess;
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

const asSet = (r: RawSet & { y: Int32Array }): LabelledSet => ({
  x: r.x,
  y: r.y,
  n: r.n,
  features: r.x.length / Math.max(1, r.n),
});

function preprocessOf(spec: RunSpec, inputShape: number[]): Preprocess {
  const p = spec.data.preprocess;
  const channels = inputShape[inputShape.length - 1]!;
  const perChannel = (v: number[] | undefined, what: string) => {
    if (!v) return undefined;
    if (v.length !== 1 && v.length !== channels) {
      throw new RetortError(
        'RETORT_DATA_INVALID',
        `/data/preprocess/${what} has ${v.length} values; give 1 or one per channel (${channels})`,
      );
    }
    return Float32Array.from({ length: channels }, (_, c) => v[v.length === 1 ? 0 : c]!);
  };
  const mean = perChannel(p.mean, 'mean');
  const std = perChannel(p.std, 'std');
  return { scale: p.scale, ...(mean ? { mean } : {}), ...(std ? { std } : {}) };
}

/** Loads the training and validation sets a spec names, checking what a run needs of them. */
export async function loadDatasets(spec: RunSpec, src: ByteSource): Promise<Datasets> {
  const rawTrain = await readLabelled(spec.data.train, '/data/train', src);
  const full = asSet(rawTrain);
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
    validation = asSet(await readLabelled(v, '/data/validation', src));
    if (validation.features !== full.features) {
      throw new RetortError(
        'RETORT_DATA_INVALID',
        `/data/validation has ${validation.features} values per example but /data/train has ${full.features}`,
      );
    }
  }
  const item = rawTrain.itemShape;
  const inputShape = spec.data.preprocess.shape ?? (item.length === 2 ? [...item, 1] : item);
  const inputSize = inputShape.reduce((a, b) => a * b, 1);
  if (inputSize !== full.features) {
    throw new RetortError(
      'RETORT_DATA_INVALID',
      `/data/preprocess/shape [${inputShape.join(', ')}] holds ${inputSize} values but each example has ${full.features}`,
    );
  }
  if (spec.data.augment && inputShape.length !== 3) {
    throw new RetortError(
      'RETORT_DATA_INVALID',
      `/data/augment needs images shaped [height, width, channels]; the data gives [${inputShape.join(', ')}]`,
    );
  }
  let maxLabel = 0;
  for (const set of [train, validation]) for (const l of set.y) if (l > maxLabel) maxLabel = l;
  const numClasses = Math.max(2, maxLabel + 1);
  if (numClasses > 10_000)
    throw new RetortError('RETORT_DATA_INVALID', `labels go up to ${maxLabel}; at most 10000 classes`);
  return { train, validation, inputShape, numClasses, preprocess: preprocessOf(spec, inputShape) };
}

/** Examples without labels (for pseudo-labelling), shaped like the training set's. */
export async function loadUnlabeled(
  spec: RunSpec,
  src: ByteSource,
  features: number,
): Promise<LabelledSet | undefined> {
  const u = spec.data.unlabeled;
  if (!u) return undefined;
  const raw = await readUnlabeled(u, '/data/unlabeled', src);
  const per = raw.x.length / Math.max(1, raw.n);
  if (per !== features) {
    throw new RetortError(
      'RETORT_DATA_INVALID',
      `/data/unlabeled has ${per} values per example but /data/train has ${features}`,
    );
  }
  if (raw.n === 0) throw new RetortError('RETORT_DATA_INVALID', '/data/unlabeled has no examples');
  return { x: raw.x, y: new Int32Array(raw.n), n: raw.n, features };
}

/** Fills `out` with the examples at `idx`, preprocessed. */
export function gatherScaled(
  set: LabelledSet,
  idx: ArrayLike<number>,
  p: Preprocess,
  out: Float32Array,
): void {
  const { features, x } = set;
  const { scale, mean, std } = p;
  const channels = mean?.length ?? std?.length ?? 1;
  for (let i = 0; i < idx.length; i++) {
    const src = idx[i]! * features;
    const dst = i * features;
    if (!mean && !std) {
      for (let k = 0; k < features; k++) out[dst + k] = x[src + k]! * scale;
      continue;
    }
    for (let k = 0; k < features; k++) {
      const c = k % channels;
      out[dst + k] = (x[src + k]! * scale - (mean ? mean[c]! : 0)) / (std ? std[c]! : 1);
    }
  }
}
