import { RetortError } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';

/** A model in TensorFlow.js layers format: `model.json` and one weights file it names. */
export interface SavedModel {
  modelJson: Uint8Array;
  weights: Uint8Array;
}

export const WEIGHTS_FILE = 'weights.bin';

/** Serializes a layers model so that `tf.loadLayersModel(<url of model.json>)` loads it. */
export async function saveModel(model: tf.LayersModel): Promise<SavedModel> {
  let saved: SavedModel | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weightData = artifacts.weightData;
      const weights = new Uint8Array(
        weightData === undefined ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(weightData),
      );
      const json = {
        modelTopology: artifacts.modelTopology,
        format: 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: 'retort',
        weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs ?? [] }],
      };
      saved = { modelJson: new TextEncoder().encode(JSON.stringify(json)), weights };
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  if (!saved) throw new Error('model.save produced nothing');
  return saved;
}

/** A model.json and its weights, read and checked, ready for tf.io.fromMemory. */
export interface ModelArtifacts {
  json: tf.io.ModelJSON;
  weightSpecs: tf.io.WeightsManifestEntry[];
  weightData: ArrayBuffer;
}

type LoadErrorCode = 'RETORT_TEACHER_UNREADABLE' | 'RETORT_MODEL_INCOMPATIBLE';

/**
 * Reads a TensorFlow.js `model.json` (layers or graph format) and the weights files its manifest
 * names; `readWeights` returns the bytes of each path (relative to the model.json).
 */
export async function readModelArtifacts(
  modelJson: Uint8Array,
  readWeights: (path: string) => Promise<Uint8Array>,
  what: string,
  code: LoadErrorCode,
): Promise<ModelArtifacts> {
  let json: tf.io.ModelJSON;
  try {
    json = JSON.parse(new TextDecoder().decode(modelJson)) as tf.io.ModelJSON;
  } catch (e) {
    throw new RetortError(code, `${what}: model.json is not JSON (${(e as Error).message})`);
  }
  if (!json.modelTopology) throw new RetortError(code, `${what}: model.json has no modelTopology`);
  const manifest = json.weightsManifest ?? [];
  const parts: Uint8Array[] = [];
  for (const group of manifest) for (const p of group.paths) parts.push(await readWeights(p));
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const weightData = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    weightData.set(p, off);
    off += p.byteLength;
  }
  return { json, weightSpecs: manifest.flatMap((g) => g.weights), weightData: weightData.buffer };
}

/**
 * Loads a layers model from its `model.json` bytes; `readWeights` returns the bytes of each path
 * its weights manifest names (relative to the model.json).
 */
export async function loadLayersModelFrom(
  modelJson: Uint8Array,
  readWeights: (path: string) => Promise<Uint8Array>,
  what: string,
  code: LoadErrorCode = 'RETORT_TEACHER_UNREADABLE',
): Promise<tf.LayersModel> {
  const a = await readModelArtifacts(modelJson, readWeights, what, code);
  if (a.json.format === 'graph-model')
    throw new RetortError(code, `${what}: model.json is a graph model; give its format as "tfjs-graph"`);
  try {
    return await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: a.json.modelTopology,
        weightSpecs: a.weightSpecs,
        weightData: a.weightData,
      }),
    );
  } catch (e) {
    throw new RetortError(code, `${what}: not a loadable tfjs layers model (${(e as Error).message})`);
  }
}
