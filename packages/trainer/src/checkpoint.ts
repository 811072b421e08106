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
  /** Self-describing binary: header length, JSON header (position, weight specs), weight bytes. */
  bytes: Uint8Array;
}

const MAGIC = 'RTCK1';

/**
 * Serializes the student's weights and the optimizer's state (Adam's moments, its step count) with
 * the training position. Tensors are encoded with tfjs's own weight format.
 */
export async function encodeCheckpoint(
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  position: TrainingPosition,
): Promise<CheckpointData> {
  const modelWeights = model.weights.map((w) => ({ name: `model/${w.originalName}`, tensor: w.read() }));
  const optWeights = (await optimizer.getWeights()).map((w) => ({
    name: `optimizer/${w.name}`,
    tensor: w.tensor,
  }));
  const { data, specs } = await tf.io.encodeWeights([...modelWeights, ...optWeights]);
  // getWeights hands out the optimizer's variables, plus fresh tensors (its step count) that are ours to free.
  for (const w of optWeights) if (!(w.tensor instanceof tf.Variable)) w.tensor.dispose();
  const header = new TextEncoder().encode(JSON.stringify({ magic: MAGIC, position, specs }));
  const weights = new Uint8Array(data);
  const bytes = new Uint8Array(4 + header.byteLength + weights.byteLength);
  new DataView(bytes.buffer).setUint32(0, header.byteLength);
  bytes.set(header, 4);
  bytes.set(weights, 4 + header.byteLength);
  return { position, bytes };
}

export function decodeCheckpoint(bytes: Uint8Array): {
  position: TrainingPosition;
  tensors: tf.NamedTensorMap;
} {
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + len))) as {
    magic: string;
    position: TrainingPosition;
    specs: tf.io.WeightsManifestEntry[];
  };
  if (header.magic !== MAGIC) throw new Error('not a Retort checkpoint');
  const data = bytes.slice(4 + len).buffer;
  return { position: header.position, tensors: tf.io.decodeWeights(data, header.specs) };
}
