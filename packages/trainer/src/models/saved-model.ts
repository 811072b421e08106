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

/** Reads one weights file the manifest names (relative to its model.json), at most `maxBytes` of it. */
export type ReadWeights = (path: string, index: number, maxBytes: number) => Promise<Uint8Array>;

const BYTES_PER_ELEMENT: Record<string, number> = {
  float32: 4,
  int32: 4,
  bool: 1,
  complex64: 8,
  uint8: 1,
  uint16: 2,
  float16: 2,
};

/**
 * How many bytes of weights a manifest declares (shape × dtype, or the quantized dtype), or null
 * when a weight's size cannot be known before reading (strings).
 */
export function declaredWeightBytes(weights: tf.io.WeightsManifestEntry[]): number | null {
  let total = 0;
  for (const w of weights) {
    const per = BYTES_PER_ELEMENT[w.quantization?.dtype ?? w.dtype];
    if (per === undefined) return null;
    total += w.shape.reduce((n, d) => n * d, 1) * per;
  }
  return total;
}

/** Whether every weight of a manifest has a name and a shape of whole, non-negative sizes. */
function wellFormed(weights: unknown[]): weights is tf.io.WeightsManifestEntry[] {
  return weights.every((w) => {
    const { name, shape } = (w ?? {}) as { name?: unknown; shape?: unknown };
    return (
      typeof name === 'string' &&
      Array.isArray(shape) &&
      shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)
    );
  });
}

/**
 * Reads a TensorFlow.js `model.json` (layers or graph format) and the weights files its manifest
 * names. A file named twice is refused (a short file listed many times would read as a huge
 * model), and the files are read with the manifest's own size as the cap: together they may not
 * hold more than the weights it declares, nor more than `maxBytes`.
 */
export async function readModelArtifacts(
  modelJson: Uint8Array,
  readWeights: ReadWeights,
  what: string,
  code: LoadErrorCode,
  maxBytes = Number.MAX_SAFE_INTEGER,
): Promise<ModelArtifacts> {
  let json: tf.io.ModelJSON;
  try {
    json = JSON.parse(new TextDecoder().decode(modelJson)) as tf.io.ModelJSON;
  } catch {
    // The parser's message quotes the text; the user has the file and needs only the verdict.
    throw new RetortError(code, `${what}: model.json is not valid JSON`);
  }
  if (typeof json !== 'object' || json === null || !json.modelTopology)
    throw new RetortError(code, `${what}: model.json has no modelTopology`);
  const manifest = json.weightsManifest ?? [];
  if (
    !Array.isArray(manifest) ||
    manifest.some((g) => !Array.isArray(g?.paths) || !Array.isArray(g?.weights))
  )
    throw new RetortError(code, `${what}: model.json's weightsManifest is not a list of { paths, weights }`);
  const paths = manifest.flatMap((g) => g.paths);
  const seen = new Set<string>();
  // Messages name entries by position, not by content: a file's bytes are not echoed back.
  for (const [i, p] of paths.entries()) {
    if (typeof p !== 'string') throw new RetortError(code, `${what}: weights path ${i + 1} is not a string`);
    if (seen.has(p))
      throw new RetortError(code, `${what}: weights path ${i + 1} names a file the manifest already named`);
    seen.add(p);
  }
  const weightSpecs: unknown[] = manifest.flatMap((g) => g.weights);
  if (!wellFormed(weightSpecs))
    throw new RetortError(code, `${what}: a weight in model.json's manifest has no name or no valid shape`);
  const declared = declaredWeightBytes(weightSpecs);
  if (declared !== null && !Number.isSafeInteger(declared))
    throw new RetortError(code, `${what}: its manifest declares more weights than any model could hold`);
  if (declared !== null && declared > maxBytes)
    throw new RetortError(
      code,
      `${what}: its weights are ${declared} bytes, more than the ${maxBytes} this server reads`,
    );
  const budget = declared ?? maxBytes;
  const parts: Uint8Array[] = [];
  let total = 0;
  for (const [i, p] of paths.entries()) {
    const part = await readWeights(p, i, budget - total);
    total += part.byteLength;
    parts.push(part);
  }
  if (declared !== null && total !== declared)
    throw new RetortError(
      code,
      `${what}: its weights files hold ${total} bytes; its manifest declares ${declared}`,
    );
  const weightData = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    weightData.set(p, off);
    off += p.byteLength;
  }
  return { json, weightSpecs, weightData: weightData.buffer };
}

/**
 * Where a weights path of the manifest at `modelUri` points: a file in the same folder (or below
 * it), by the same scheme and host. Absolute URLs, other hosts or schemes, `..` out of the folder,
 * queries and fragments are refused.
 */
export function weightFileUri(
  modelUri: string,
  relative: string,
  index: number,
  what: string,
  code: LoadErrorCode,
): string {
  const base = new URL(modelUri);
  const folder = base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1);
  let resolved: URL | undefined;
  try {
    resolved = /^[a-z][a-z0-9+.-]*:|^[\\/]|\\/i.test(relative) ? undefined : new URL(relative, base);
  } catch {
    resolved = undefined;
  }
  if (
    !resolved ||
    resolved.protocol !== base.protocol ||
    resolved.host !== base.host ||
    resolved.search !== '' ||
    resolved.hash !== '' ||
    !resolved.pathname.startsWith(folder)
  )
    throw new RetortError(
      code,
      `${what}: weights path ${index + 1} is not a file beside model.json (same scheme and folder, no query)`,
    );
  return resolved.toString();
}

/**
 * Loads a layers model from its `model.json` bytes; `readWeights` returns the bytes of each path
 * its weights manifest names (relative to the model.json).
 */
export async function loadLayersModelFrom(
  modelJson: Uint8Array,
  readWeights: ReadWeights,
  what: string,
  code: LoadErrorCode = 'RETORT_TEACHER_UNREADABLE',
  maxBytes?: number,
): Promise<tf.LayersModel> {
  return layersModelFromArtifacts(
    await readModelArtifacts(modelJson, readWeights, what, code, maxBytes),
    what,
    code,
  );
}

/** A layers model from artifacts already read (graph models are refused with the format to give). */
export async function layersModelFromArtifacts(
  a: ModelArtifacts,
  what: string,
  code: LoadErrorCode = 'RETORT_TEACHER_UNREADABLE',
): Promise<tf.LayersModel> {
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
