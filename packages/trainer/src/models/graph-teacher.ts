import { RetortError } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import type { ModelArtifacts } from './saved-model.js';
import { product, type Teacher, tfjsRunTeacher } from './teacher.js';

interface GraphNode {
  name: string;
  op: string;
  input?: string[];
}

/**
 * A teacher in TensorFlow.js graph-model format (what `tensorflowjs_converter` makes of a
 * TensorFlow SavedModel). `features` are node names whose outputs `forward` returns too, as
 * TensorFlow lays them out (NHWC). Its input gradients come from differentiating the graph's ops.
 */
export async function graphTeacher(
  artifacts: ModelArtifacts,
  inputShape: number[],
  features: string[],
  what: string,
): Promise<Teacher> {
  const nodes = ((artifacts.json.modelTopology as { node?: GraphNode[] }).node ?? []) as GraphNode[];
  let model: tf.GraphModel;
  try {
    model = await tf.loadGraphModel(
      tf.io.fromMemory({
        modelTopology: artifacts.json.modelTopology,
        weightSpecs: artifacts.weightSpecs,
        weightData: artifacts.weightData,
        format: 'graph-model',
      }),
    );
  } catch (e) {
    throw new RetortError(
      'RETORT_TEACHER_UNREADABLE',
      `${what}: not a loadable tfjs graph model (${(e as Error).message})`,
    );
  }
  try {
    return describe(model, nodes, inputShape, features, what);
  } catch (e) {
    model.dispose();
    throw e;
  }
}

function describe(
  model: tf.GraphModel,
  nodes: GraphNode[],
  inputShape: number[],
  features: string[],
  what: string,
): Teacher {
  if (model.inputs.length !== 1 || model.outputs.length < 1)
    throw new RetortError(
      'RETORT_MODEL_INCOMPATIBLE',
      `${what}: a teacher takes one input and gives logits first; this graph has ${model.inputs.length} inputs and ${model.outputs.length} outputs`,
    );
  const declared = (model.inputs[0]!.shape ?? []).slice(1);
  const modelInput = declared.length && declared.every((d) => d > 0) ? declared : inputShape;
  if (product(modelInput) !== product(inputShape))
    throw new RetortError(
      'RETORT_MODEL_INCOMPATIBLE',
      `the teacher takes inputs of shape [${modelInput.join(', ')}] but the data's examples have shape [${inputShape.join(', ')}]`,
    );
  const known = new Set(nodes.map((n) => n.name));
  for (const f of features) {
    if (!known.has(f)) {
      const names = nodes.filter((n) => n.op !== 'Const').map((n) => n.name);
      throw new RetortError(
        'RETORT_MODEL_INCOMPATIBLE',
        `the teacher has no node named "${f}" (its nodes: ${names.slice(0, 40).join(', ')}${names.length > 40 ? ', …' : ''})`,
      );
    }
  }
  const outputName = model.outputs[0]!.name;
  const outputNode = nodes.find((n) => n.name === outputName.replace(/:\d+$/, ''));
  const endsInSoftmax = outputNode?.op === 'Softmax';
  const run = (x: tf.Tensor, names: string[]) => {
    const r = model.execute(x, names);
    return Array.isArray(r) ? r : [r];
  };
  // The number of classes, from one example.
  const probe = tf.tidy(() => run(tf.zeros([1, ...modelInput]), [outputName])[0]!);
  const probeShape = probe.shape;
  probe.dispose();
  if (probeShape.length !== 2)
    throw new RetortError(
      'RETORT_MODEL_INCOMPATIBLE',
      `${what}: its output ${outputName} has shape [${probeShape.join(', ')}] for one example, not [1, classes]`,
    );
  const numClasses = probeShape[1]!;
  const params = nodes
    .filter((n) => n.op === 'Const')
    .reduce((a, n) => a + (model.weights[n.name]?.[0]?.size ?? 0), 0);
  return tfjsRunTeacher({
    params,
    numClasses,
    inputShape: modelInput,
    endsInSoftmax,
    outputs: (x, withFeatures) => run(x, withFeatures ? [outputName, ...features] : [outputName]),
    dispose: () => model.dispose(),
  });
}
