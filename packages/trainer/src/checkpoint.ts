import { RetortError } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';

/** Where a run stands: enough, with the weights, to continue from here. */
export interface TrainingPosition {
  /** Steps completed in all. */
  step: number;
  /** Epoch in progress (0-based) and batches of it already done. */
  epoch: number;
  batchInEpoch: number;
}

export interface CheckpointData {
  position: TrainingPosition;
  /** Validation accuracy when the checkpoint follows an evaluation (an epoch's end). */
  valAccuracy?: number;
  /** Self-describing binary: header length, JSON header (position, weight specs), weight bytes. */
  bytes: Uint8Array;
}

const MAGIC = 'RTCK1';

/**
 * Optimizer state that `getWeights` leaves out. Adam keeps β₁ᵗ and β₂ᵗ as running products; its
 * `setWeights` recomputes them with pow(), which differs from the product in the last bits, so a
 * resumed run would drift from an uninterrupted one. They are saved and restored as they are.
 */
function optimizerExtras(optimizer: tf.Optimizer): { name: string; variable: tf.Variable }[] {
  const o = optimizer as unknown as { accBeta1?: tf.Variable; accBeta2?: tf.Variable };
  const out: { name: string; variable: tf.Variable }[] = [];
  if (o.accBeta1 instanceof tf.Variable) out.push({ name: 'accBeta1', variable: o.accBeta1 });
  if (o.accBeta2 instanceof tf.Variable) out.push({ name: 'accBeta2', variable: o.accBeta2 });
  return out;
}

/**
 * Serializes everything a run needs to continue exactly: the student's weights, the optimizer's
 * state (Adam's moments, step count and running β products) and the training position. Random
 * state needs no saving: every draw derives from the seed and the step or epoch it is for.
 */
export interface CheckpointExtras {
  valAccuracy?: number | undefined;
  /** More tensors to carry (e.g. the best weights so far), saved as `extra/<name>`. */
  tensors?: { name: string; tensor: tf.Tensor }[];
  /** More state, as JSON (e.g. early stopping's counters). */
  state?: Record<string, unknown>;
}

export async function encodeCheckpoint(
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  position: TrainingPosition,
  extras: CheckpointExtras = {},
): Promise<CheckpointData> {
  const valAccuracy = extras.valAccuracy;
  const modelWeights = model.weights.map((w) => ({ name: `model/${w.originalName}`, tensor: w.read() }));
  const optWeights = (await optimizer.getWeights()).map((w) => ({
    name: `optimizer/${w.name}`,
    tensor: w.tensor,
  }));
  const optExtras = optimizerExtras(optimizer).map((e) => ({
    name: `optimizer-extra/${e.name}`,
    tensor: e.variable as tf.Tensor,
  }));
  const more = (extras.tensors ?? []).map((t) => ({ name: `extra/${t.name}`, tensor: t.tensor }));
  const { data, specs } = await tf.io.encodeWeights([...modelWeights, ...optWeights, ...optExtras, ...more]);
  // getWeights hands out the optimizer's variables, plus fresh tensors (its step count) that are ours to free.
  for (const w of optWeights) if (!(w.tensor instanceof tf.Variable)) w.tensor.dispose();
  const header = new TextEncoder().encode(
    JSON.stringify({ magic: MAGIC, position, specs, state: extras.state ?? {} }),
  );
  const weights = new Uint8Array(data);
  const bytes = new Uint8Array(4 + header.byteLength + weights.byteLength);
  new DataView(bytes.buffer).setUint32(0, header.byteLength);
  bytes.set(header, 4);
  bytes.set(weights, 4 + header.byteLength);
  return valAccuracy === undefined ? { position, bytes } : { position, valAccuracy, bytes };
}

export interface DecodedCheckpoint {
  position: TrainingPosition;
  state: Record<string, unknown>;
  /** Tensors in the order they were saved, by name. */
  tensors: { name: string; tensor: tf.Tensor }[];
}

export function decodeCheckpoint(bytes: Uint8Array): DecodedCheckpoint {
  const bad = (why: string) =>
    new RetortError('RETORT_CHECKPOINT_INVALID', `the checkpoint cannot be read: ${why}`);
  if (bytes.byteLength < 4) throw bad('too short');
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  let header: {
    magic: string;
    position: TrainingPosition;
    specs: tf.io.WeightsManifestEntry[];
    state?: Record<string, unknown>;
  };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + len)));
  } catch {
    throw bad('no header');
  }
  if (header.magic !== MAGIC) throw bad('not a Retort checkpoint');
  // A copy, at offset 0 of a buffer of its own: `bytes` may be a Buffer (its slice() is a view)
  // sitting at an offset in a larger buffer, as IPC and Postgres hand them out.
  const data = new Uint8Array(bytes.subarray(4 + len)).buffer;
  const map = tf.io.decodeWeights(data, header.specs);
  return {
    position: header.position,
    state: header.state ?? {},
    tensors: header.specs.map((s) => ({ name: s.name, tensor: map[s.name]! })),
  };
}

export interface Restored {
  position: TrainingPosition;
  state: Record<string, unknown>;
  /** The checkpoint's extra tensors, by name; the caller owns (and disposes) them. */
  extras: Map<string, tf.Tensor>;
}

/**
 * Puts a checkpoint's state into a freshly built student and optimizer. The model must have the
 * checkpoint's architecture (it is built from the same spec).
 */
export async function restoreCheckpoint(
  bytes: Uint8Array,
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
): Promise<Restored> {
  const { position, state, tensors } = decodeCheckpoint(bytes);
  const byName = new Map(tensors.map((t) => [t.name, t.tensor]));
  const extras = new Map<string, tf.Tensor>();
  try {
    for (const w of model.weights) {
      const t = byName.get(`model/${w.originalName}`);
      if (!t || t.shape.join() !== w.shape.join()) {
        throw new RetortError(
          'RETORT_CHECKPOINT_INVALID',
          `the checkpoint does not fit the student (weight ${w.originalName})`,
        );
      }
      w.write(t);
    }
    const opt = tensors
      .filter((t) => t.name.startsWith('optimizer/'))
      .map((t) => ({ name: t.name.slice('optimizer/'.length), tensor: t.tensor }));
    await optimizer.setWeights(opt);
    for (const e of optimizerExtras(optimizer)) {
      const t = byName.get(`optimizer-extra/${e.name}`);
      if (t) e.variable.assign(t);
    }
    for (const t of tensors)
      if (t.name.startsWith('extra/')) extras.set(t.name.slice('extra/'.length), t.tensor);
  } finally {
    // write() and setWeights() copy into variables; the decoded tensors are ours to free.
    for (const t of tensors) if (!t.name.startsWith('extra/')) t.tensor.dispose();
  }
  return { position, state, extras };
}
