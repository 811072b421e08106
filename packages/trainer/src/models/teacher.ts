import { RetortError } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';

/**
 * A trained model that only has to answer: logits for a batch of examples. Its outputs are what the
 * student imitates; whether it runs in TensorFlow.js or ONNX Runtime does not matter to the loop.
 */
export interface Teacher {
  /** What runs it, for the summary: `tfjs-<backend>` or `onnxruntime-cpu`. */
  runtime: string;
  params: number;
  numClasses: number;
  /** Logits for `n` examples laid out as [n, ...inputShape], row-major. */
  logits(x: Float32Array, n: number): Promise<Float32Array>;
  dispose(): void;
}

const product = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

/**
 * Log-probabilities stand in for logits when a model ends in softmax: softmax(log p / T) is the
 * same distribution that softmax(z / T) gives, since the two differ by a constant per row.
 */
function logOfProbabilities(p: Float32Array): Float32Array {
  const out = new Float32Array(p.length);
  for (let i = 0; i < p.length; i++) out[i] = Math.log(Math.max(p[i]!, 1e-12));
  return out;
}

function looksLikeProbabilities(v: Float32Array, classes: number): boolean {
  for (let r = 0; r < v.length / classes; r++) {
    let sum = 0;
    for (let c = 0; c < classes; c++) {
      const x = v[r * classes + c]!;
      if (x < 0 || x > 1) return false;
      sum += x;
    }
    if (Math.abs(sum - 1) > 1e-3) return false;
  }
  return true;
}

export function tfjsTeacher(model: tf.LayersModel, inputShape: number[]): Teacher {
  const modelInput = model.inputs[0]!.shape.slice(1) as number[];
  if (product(modelInput) !== product(inputShape)) {
    throw new RetortError(
      'RETORT_MODEL_INCOMPATIBLE',
      `the teacher takes inputs of shape [${modelInput.join(', ')}] but the data's examples have shape [${inputShape.join(', ')}]`,
    );
  }
  const out = model.outputs[0]!.shape;
  const numClasses = out[out.length - 1] as number;
  const last = model.layers[model.layers.length - 1]!;
  const endsInSoftmax = (last.getConfig() as { activation?: string }).activation === 'softmax';
  return {
    runtime: `tfjs-${tf.getBackend()}`,
    params: model.countParams(),
    numClasses,
    async logits(x, n) {
      const y = tf.tidy(() => model.predict(tf.tensor(x, [n, ...modelInput])) as tf.Tensor);
      const v = (await y.data()) as Float32Array;
      y.dispose();
      return endsInSoftmax ? logOfProbabilities(v) : v;
    },
    dispose: () => model.dispose(),
  };
}

/** Parameter count of an ONNX model: the sizes of its graph's initializers. */
export function onnxParamCount(bytes: Uint8Array): number {
  const model = onnxProto.onnx.ModelProto.decode(bytes);
  let total = 0;
  for (const t of model.graph?.initializer ?? []) total += product((t.dims ?? []).map((d) => Number(d)));
  return total;
}

/**
 * An ONNX teacher under ONNX Runtime. The input layout is read from the model: rank 2 takes
 * flattened examples, rank 4 takes NCHW (PyTorch's export) or NHWC, told apart by where the
 * channel count sits. A fixed batch dimension is honoured by running in chunks of that size.
 */
export async function onnxTeacher(bytes: Uint8Array, inputShape: number[], what: string): Promise<Teacher> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all' });
  } catch (e) {
    throw new RetortError(
      'RETORT_TEACHER_UNREADABLE',
      `${what} is not a model ONNX Runtime can load: ${(e as Error).message}`,
    );
  }
  const meta = session.inputMetadata[0];
  if (!meta?.isTensor) throw new RetortError('RETORT_TEACHER_UNREADABLE', `${what} has no tensor input`);
  const dims = meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : -1));
  const perExample = dims.slice(1);
  const features = product(inputShape);
  const [h, w, c] = inputShape.length === 3 ? (inputShape as [number, number, number]) : [0, 0, 0];
  let layout: 'flat' | 'nchw' | 'nhwc';
  if (perExample.length === 3 && c > 0 && perExample[0] === c && perExample[1] === h && perExample[2] === w)
    layout = 'nchw';
  else if (perExample.length === 3 && c > 0 && perExample[2] === c) layout = 'nhwc';
  else if (perExample.every((d) => d === -1) || product(perExample) === features)
    layout = c > 1 && perExample.length === 3 ? 'nhwc' : 'flat';
  else {
    throw new RetortError(
      'RETORT_MODEL_INCOMPATIBLE',
      `${what} takes inputs of shape [${meta.shape.join(', ')}]; the data's examples have shape [${inputShape.join(', ')}]`,
    );
  }
  const exampleDims =
    layout === 'flat'
      ? perExample.length === 1
        ? [features]
        : perExample
      : layout === 'nchw'
        ? [c, h, w]
        : [h, w, c];
  const fixedBatch = dims[0]! > 0 ? dims[0]! : undefined;
  const inputName = session.inputNames[0]!;
  const outputName = session.outputNames[0]!;
  let params = 0;
  try {
    params = onnxParamCount(bytes);
  } catch {
    // A model ORT runs but protobufjs cannot decode is still a usable teacher; only the count is lost.
  }

  const toLayout = (x: Float32Array, n: number): Float32Array => {
    if (layout !== 'nchw' || c === 1) return x;
    const out = new Float32Array(x.length);
    for (let i = 0; i < n; i++)
      for (let y = 0; y < h; y++)
        for (let xx = 0; xx < w; xx++)
          for (let ch = 0; ch < c; ch++)
            out[i * features + ch * h * w + y * w + xx] = x[i * features + (y * w + xx) * c + ch]!;
    return out;
  };

  let numClasses = 0;
  let probabilities: boolean | undefined;
  const run = async (x: Float32Array, n: number): Promise<Float32Array> => {
    const feeds = { [inputName]: new ort.Tensor('float32', x, [n, ...exampleDims]) };
    const result = await session.run(feeds);
    const out = result[outputName]!;
    return out.data as Float32Array;
  };

  const teacher: Teacher = {
    runtime: 'onnxruntime-cpu',
    params,
    numClasses: 0,
    async logits(x, n) {
      const input = toLayout(x, n);
      let v: Float32Array;
      if (fixedBatch === undefined || fixedBatch === n) v = await run(input, n);
      else {
        const parts: Float32Array[] = [];
        for (let i = 0; i < n; i += fixedBatch) {
          const chunk = new Float32Array(fixedBatch * features);
          chunk.set(input.subarray(i * features, Math.min(n, i + fixedBatch) * features));
          parts.push(await run(chunk, fixedBatch));
        }
        const k = parts[0]!.length / fixedBatch;
        v = new Float32Array(n * k);
        for (const [j, p] of parts.entries()) {
          v.set(p.subarray(0, Math.min(fixedBatch, n - j * fixedBatch) * k), j * fixedBatch * k);
        }
      }
      if (v.length % n !== 0)
        throw new RetortError(
          'RETORT_MODEL_INCOMPATIBLE',
          `${what} gave ${v.length} outputs for ${n} examples`,
        );
      const classes = v.length / n;
      if (numClasses === 0) {
        numClasses = classes;
        teacher.numClasses = classes;
      }
      probabilities ??= looksLikeProbabilities(v, classes);
      return probabilities ? logOfProbabilities(v) : v;
    },
    dispose: () => {
      void session.release();
    },
  };
  // One example tells how many classes the teacher has.
  await teacher.logits(new Float32Array(features * (fixedBatch ?? 1)), fixedBatch ?? 1);
  probabilities = undefined;
  return teacher;
}
