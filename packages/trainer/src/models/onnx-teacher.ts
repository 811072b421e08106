import { createHash } from 'node:crypto';
import { RetortError } from '@retort/spec';
import onnxProto, { type onnx as OnnxTypes } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import {
  type FeatureBatch,
  logOfProbabilities,
  looksLikeProbabilities,
  nchwToNhwc,
  product,
  type Teacher,
} from './teacher.js';

const { onnx } = onnxProto;
type ModelProto = OnnxTypes.ModelProto;
type GraphProto = OnnxTypes.IGraphProto;
type TensorProto = OnnxTypes.ITensorProto;

/** Parameter count of an ONNX model: the sizes of its graph's initializers. */
export function onnxParamCount(model: ModelProto): number {
  let total = 0;
  for (const t of model.graph?.initializer ?? []) total += product((t.dims ?? []).map((d) => Number(d)));
  return total;
}

type NodeProto = OnnxTypes.INodeProto;
type SparseTensorProto = OnnxTypes.ISparseTensorProto;

function* tensorsOfSparse(t: SparseTensorProto | null | undefined): Generator<TensorProto> {
  if (t?.values) yield t.values;
  if (t?.indices) yield t.indices;
}

/** Every tensor some nodes hold in their attributes (Constant and the like), subgraphs included. */
function* tensorsOfNodes(nodes: NodeProto[] | null | undefined): Generator<TensorProto> {
  for (const node of nodes ?? [])
    for (const a of node.attribute ?? []) {
      if (a.t) yield a.t;
      yield* a.tensors ?? [];
      yield* tensorsOfSparse(a.sparseTensor);
      for (const st of a.sparseTensors ?? []) yield* tensorsOfSparse(st);
      yield* tensorsOfGraph(a.g);
      for (const g of a.graphs ?? []) yield* tensorsOfGraph(g);
    }
}

/** Every tensor a graph holds: initializers, sparse ones, and those in its nodes. */
function* tensorsOfGraph(graph: GraphProto | null | undefined): Generator<TensorProto> {
  if (!graph) return;
  yield* graph.initializer ?? [];
  for (const s of graph.sparseInitializer ?? []) yield* tensorsOfSparse(s);
  yield* tensorsOfNodes(graph.node);
}

/** Every tensor of a model: its graph's and its functions' (which ONNX Runtime inlines). */
function* tensorsOf(model: ModelProto): Generator<TensorProto> {
  yield* tensorsOfGraph(model.graph);
  for (const f of model.functions ?? []) yield* tensorsOfNodes(f.node);
}

/**
 * Decodes an ONNX model and refuses one whose tensors live in external files: ONNX Runtime would
 * look for them relative to the worker's working directory, outside every data root.
 */
export function decodeOnnx(bytes: Uint8Array, what: string): ModelProto {
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch {
    throw new RetortError('RETORT_TEACHER_UNREADABLE', `${what} is not an ONNX model (it does not decode)`);
  }
  for (const t of tensorsOf(model)) {
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL || (t.externalData?.length ?? 0) > 0)
      throw new RetortError(
        'RETORT_TEACHER_UNREADABLE',
        `${what} keeps tensor ${t.name ? `"${t.name.slice(0, 100)}" ` : ''}in an external data file, which Retort does not read; save the model with its weights inside (onnx.save_model(model, path, save_as_external_data=False))`,
      );
  }
  return model;
}

/**
 * Makes intermediate values graph outputs, so ONNX Runtime returns them. A name may be a node's
 * (its first output is meant) or a value's. Returns the new model bytes and the value names.
 */
export function exposeOutputs(
  model: ModelProto,
  names: string[],
  what: string,
): { bytes: Uint8Array; values: string[] } {
  const graph = model.graph;
  if (!graph) throw new RetortError('RETORT_TEACHER_UNREADABLE', `${what} has no graph`);
  const nodes = graph.node ?? [];
  graph.output ??= [];
  const outputs = graph.output;
  const produced = new Set(nodes.flatMap((n) => n.output ?? []));
  const values = names.map((name) => {
    const node = nodes.find((n) => n.name === name);
    const value = node?.output?.[0] ?? (produced.has(name) ? name : undefined);
    if (!value) {
      const known = nodes
        .map((n) => n.name)
        .filter(Boolean)
        .slice(0, 40)
        .join(', ');
      throw new RetortError(
        'RETORT_MODEL_INCOMPATIBLE',
        `${what} has no node or value named "${name}" (its nodes: ${known})`,
      );
    }
    return value;
  });
  for (const v of values) {
    if (!outputs.some((o) => o.name === v)) outputs.push(onnx.ValueInfoProto.create({ name: v }));
  }
  return { bytes: onnx.ModelProto.encode(model).finish(), values };
}

export interface OnnxOptions {
  /** Try ONNX Runtime's CUDA execution provider first (on GPU nodes). */
  cuda?: boolean;
  log?: (message: string) => void;
}

/**
 * An ONNX teacher under ONNX Runtime. The input layout is read from the model: rank 2 takes
 * flattened examples, rank 4 takes NCHW (PyTorch's export) or NHWC, told apart by where the
 * channel count sits. `features` name nodes whose outputs `forward` returns too (rank-4 ones as
 * NHWC). A fixed batch dimension is honoured by running in chunks of that size.
 */
export async function onnxTeacher(
  bytes: Uint8Array,
  inputShape: number[],
  what: string,
  features: string[] = [],
  options: OnnxOptions = {},
): Promise<Teacher> {
  const model = decodeOnnx(bytes, what);
  const params = onnxParamCount(model);
  const exposed = features.length ? exposeOutputs(model, features, what) : { bytes, values: [] };
  const sessionOptions = { graphOptimizationLevel: features.length ? 'basic' : 'all' } as const;
  let session: ort.InferenceSession | undefined;
  let provider = 'cpu';
  if (options.cuda) {
    // On a GPU node the CUDA provider runs the teacher; where ONNX Runtime has no CUDA build (or no
    // GPU answers) the CPU does, and the log says why.
    try {
      session = await ort.InferenceSession.create(exposed.bytes, {
        ...sessionOptions,
        executionProviders: ['cuda', 'cpu'],
        logSeverityLevel: 4,
      });
      provider = 'cuda';
    } catch (e) {
      options.log?.(
        `ONNX Runtime's CUDA provider is not available (${(e as Error).message}); the teacher runs on CPU`,
      );
    }
  }
  try {
    session ??= await ort.InferenceSession.create(exposed.bytes, sessionOptions);
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
  const size = product(inputShape);
  const [h, w, c] = inputShape.length === 3 ? (inputShape as [number, number, number]) : [0, 0, 0];
  let layout: 'flat' | 'nchw' | 'nhwc';
  if (perExample.length === 3 && c > 0 && perExample[0] === c && perExample[1] === h && perExample[2] === w)
    layout = 'nchw';
  else if (perExample.length === 3 && c > 0 && perExample[2] === c) layout = 'nhwc';
  else if (perExample.every((d) => d === -1) || product(perExample) === size)
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
        ? [size]
        : perExample
      : layout === 'nchw'
        ? [c, h, w]
        : [h, w, c];
  const fixedBatch = dims[0]! > 0 ? dims[0]! : undefined;
  const inputName = session.inputNames[0]!;
  const logitsName = session.outputNames[0]!;
  const outputNames = [logitsName, ...exposed.values];

  const toLayout = (x: Float32Array, n: number): Float32Array => {
    if (layout !== 'nchw' || c === 1) return x;
    const out = new Float32Array(x.length);
    for (let i = 0; i < n; i++)
      for (let y = 0; y < h; y++)
        for (let xx = 0; xx < w; xx++)
          for (let ch = 0; ch < c; ch++)
            out[i * size + ch * h * w + y * w + xx] = x[i * size + (y * w + xx) * c + ch]!;
    return out;
  };

  /** Runs the session on `n` examples (in chunks when its batch size is fixed); one result per output. */
  const run = async (x: Float32Array, n: number, names: string[]): Promise<FeatureBatch[]> => {
    const once = async (chunk: Float32Array, m: number) => {
      const result = await session.run(
        { [inputName]: new ort.Tensor('float32', chunk, [m, ...exampleDims]) },
        names,
      );
      return names.map((name) => ({
        data: result[name]!.data as Float32Array,
        shape: [...result[name]!.dims],
      }));
    };
    const input = toLayout(x, n);
    if (fixedBatch === undefined || fixedBatch === n) return once(input, n);
    const parts: FeatureBatch[][] = [];
    for (let i = 0; i < n; i += fixedBatch) {
      const chunk = new Float32Array(fixedBatch * size);
      chunk.set(input.subarray(i * size, Math.min(n, i + fixedBatch) * size));
      parts.push(await once(chunk, fixedBatch));
    }
    return names.map((_, k) => {
      const per = product(parts[0]![k]!.shape.slice(1));
      const data = new Float32Array(n * per);
      for (const [j, p] of parts.entries())
        data.set(
          p[k]!.data.subarray(0, Math.min(fixedBatch, n - j * fixedBatch) * per),
          j * fixedBatch * per,
        );
      return { data, shape: [n, ...parts[0]![k]!.shape.slice(1)] };
    });
  };

  let probabilities: boolean | undefined;
  const asLogits = (v: Float32Array, n: number) => {
    if (v.length % n !== 0)
      throw new RetortError(
        'RETORT_MODEL_INCOMPATIBLE',
        `${what} gave ${v.length} outputs for ${n} examples`,
      );
    probabilities ??= looksLikeProbabilities(v, v.length / n);
    return probabilities ? logOfProbabilities(v) : v;
  };

  const teacher: Teacher = {
    runtime: `onnxruntime-${provider}`,
    params,
    numClasses: 0,
    fingerprint: createHash('sha256').update(bytes).digest('hex'),
    async logits(x, n) {
      const [logits] = await run(x, n, [logitsName]);
      return asLogits(logits!.data, n);
    },
    async forward(x, n) {
      const [logits, ...rest] = await run(x, n, outputNames);
      return {
        logits: asLogits(logits!.data, n),
        features: rest.map((f) =>
          f.shape.length === 4 && layout === 'nchw' ? nchwToNhwc(f.data, f.shape) : f,
        ),
      };
    },
    dispose: () => {
      void session.release();
    },
  };
  // One example tells how many classes the teacher has.
  const probe = await run(new Float32Array(size * (fixedBatch ?? 1)), fixedBatch ?? 1, [logitsName]);
  teacher.numClasses = probe[0]!.data.length / (fixedBatch ?? 1);
  return teacher;
}
