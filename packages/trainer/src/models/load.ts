import { createHash } from 'node:crypto';
import type { ByteSource } from '@retort/spec';
import { isRetortError, RetortError, type RunSpec, type TeacherSpec } from '@retort/spec';
import type * as tf from '@tensorflow/tfjs';
import { graphTeacher } from './graph-teacher.js';
import { type OnnxOptions, onnxTeacher } from './onnx-teacher.js';
import { buildPreset, presetParams } from './presets.js';
import {
  layersModelFromArtifacts,
  loadLayersModelFrom,
  type ModelArtifacts,
  type ReadWeights,
  readModelArtifacts,
  type SavedModel,
  WEIGHTS_FILE,
  weightFileUri,
} from './saved-model.js';
import type { Teacher } from './teacher.js';
import { tfjsTeacher } from './tfjs-teacher.js';

/** Resolves `{ run: id }` teachers: the worker reads them from Postgres, the CLI from its folder. */
export type RunModelLoader = (runId: string) => Promise<SavedModel>;

/** model.json at `uri`, and a reader for the weights files it names (beside it), hashing all of them. */
function modelFiles(uri: string, src: ByteSource, what: string, code: LoadErrorCode) {
  const hash = createHash('sha256');
  const seen = new Set<string>();
  const readWeights: ReadWeights = async (p, index, maxBytes) => {
    const file = weightFileUri(uri, p, index, what, code);
    // Named once as written is checked too; this catches `./w.bin` and `%77.bin` for `w.bin`.
    if (seen.has(file))
      throw new RetortError(
        code,
        `${what}: weights path ${index + 1} names a file the manifest already named`,
      );
    seen.add(file);
    const bytes = await src.read(file, { maxBytes });
    hash.update(bytes);
    return bytes;
  };
  return {
    modelJson: async () => {
      const json = await src.read(uri, { maxBytes: MAX_MODEL_JSON_BYTES });
      hash.update(json);
      return json;
    },
    readWeights,
    fingerprint: () => hash.digest('hex'),
  };
}

/** The largest model.json read (topology and manifest; the weights are separate files). */
const MAX_MODEL_JSON_BYTES = 64 * 2 ** 20;

type LoadErrorCode = 'RETORT_TEACHER_UNREADABLE' | 'RETORT_MODEL_INCOMPATIBLE';

async function readArtifacts(
  uri: string,
  src: ByteSource,
  what: string,
  code: LoadErrorCode,
): Promise<{ artifacts: ModelArtifacts; fingerprint: string }> {
  const files = modelFiles(uri, src, what, code);
  const artifacts = await readModelArtifacts(
    await files.modelJson(),
    files.readWeights,
    what,
    code,
    src.maxBytes,
  );
  return { artifacts, fingerprint: files.fingerprint() };
}

async function readLayersModel(
  uri: string,
  src: ByteSource,
  what: string,
  code: LoadErrorCode,
): Promise<{ model: tf.LayersModel; fingerprint: string }> {
  const { artifacts, fingerprint } = await readArtifacts(uri, src, what, code);
  return { model: await layersModelFromArtifacts(artifacts, what, code), fingerprint };
}

export async function loadTeacher(
  spec: TeacherSpec,
  inputShape: number[],
  src: ByteSource,
  loadRun: RunModelLoader,
  /** Intermediate outputs the losses need, by layer or node name. */
  features: string[] = [],
  onnx: OnnxOptions = {},
): Promise<Teacher> {
  try {
    if ('run' in spec) {
      const saved = await loadRun(spec.run);
      const model = await loadLayersModelFrom(
        saved.modelJson,
        async (p) => {
          if (p !== WEIGHTS_FILE)
            throw new RetortError(
              'RETORT_TEACHER_UNREADABLE',
              `run ${spec.run}'s model names an unknown file ${p}`,
            );
          return saved.weights;
        },
        `the model of run ${spec.run}`,
      );
      const teacher = tfjsTeacher(model, inputShape, features);
      teacher.fingerprint = createHash('sha256').update(saved.modelJson).update(saved.weights).digest('hex');
      return teacher;
    }
    if (spec.format === 'onnx')
      return await onnxTeacher(await src.read(spec.uri), inputShape, `teacher ${spec.uri}`, features, onnx);
    if (spec.format === 'tfjs-graph') {
      const what = `teacher ${spec.uri}`;
      const read = await readArtifacts(spec.uri, src, what, 'RETORT_TEACHER_UNREADABLE');
      const teacher = await graphTeacher(read.artifacts, inputShape, features, what);
      teacher.fingerprint = read.fingerprint;
      return teacher;
    }
    const { model, fingerprint } = await readLayersModel(
      spec.uri,
      src,
      `teacher ${spec.uri}`,
      'RETORT_TEACHER_UNREADABLE',
    );
    const teacher = tfjsTeacher(model, inputShape, features);
    teacher.fingerprint = fingerprint;
    return teacher;
  } catch (e) {
    if (isRetortError(e) && e.code === 'RETORT_DATA_UNREADABLE')
      throw new RetortError('RETORT_TEACHER_UNREADABLE', `teacher: ${e.message}`);
    throw e;
  }
}

export async function loadStudent(
  spec: RunSpec,
  inputShape: number[],
  numClasses: number,
  src: ByteSource,
): Promise<tf.LayersModel> {
  const s = spec.student;
  const tooBig = (params: number) =>
    new RetortError(
      'RETORT_MODEL_INCOMPATIBLE',
      `the student would have ${params.toLocaleString('en')} parameters on this data; a worker trains at most ${MAX_STUDENT_PARAMS.toLocaleString('en')}`,
    );
  if ('preset' in s) {
    const params = presetParams(s, inputShape, numClasses);
    if (params > MAX_STUDENT_PARAMS) throw tooBig(params);
    return buildPreset(s, inputShape, numClasses, spec.training.seed);
  }
  const model = await loadCustomStudent(s.uri, inputShape, numClasses, src);
  if (model.countParams() > MAX_STUDENT_PARAMS) {
    const params = model.countParams();
    model.dispose();
    throw tooBig(params);
  }
  return model;
}

/** The most parameters a student may have: with Adam's two moments, about 1.2 GiB of float32. */
export const MAX_STUDENT_PARAMS = 100_000_000;

async function loadCustomStudent(
  uri: string,
  inputShape: number[],
  numClasses: number,
  src: ByteSource,
): Promise<tf.LayersModel> {
  const { model } = await readLayersModel(uri, src, `student ${uri}`, 'RETORT_MODEL_INCOMPATIBLE');
  const out = model.outputs[0]!.shape;
  if (out[out.length - 1] !== numClasses) {
    throw new RetortError(
      'RETORT_MODEL_INCOMPATIBLE',
      `the student outputs ${out[out.length - 1]} values per example; the task has ${numClasses} classes`,
    );
  }
  const inShape = model.inputs[0]!.shape.slice(1);
  if (inShape.join(',') !== inputShape.join(',')) {
    throw new RetortError(
      'RETORT_MODEL_INCOMPATIBLE',
      `the student takes inputs of shape [${inShape.join(', ')}]; the data gives [${inputShape.join(', ')}] (set data.preprocess.shape)`,
    );
  }
  return model;
}
