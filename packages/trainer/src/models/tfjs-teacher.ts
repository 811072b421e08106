import { RetortError } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import { product, type Teacher, tfjsRunTeacher } from './teacher.js';

/** The outputs of the named layers of `model`, for losses that compare intermediate features. */
export function layerOutputs(model: tf.LayersModel, names: string[], who: string): tf.SymbolicTensor[] {
  return names.map((name) => {
    let layer: tf.layers.Layer;
    try {
      layer = model.getLayer(name);
    } catch {
      const known = model.layers.map((l) => l.name).join(', ');
      throw new RetortError(
        'RETORT_MODEL_INCOMPATIBLE',
        `the ${who} has no layer named "${name}" (its layers: ${known})`,
      );
    }
    return layer.output as tf.SymbolicTensor;
  });
}

/** A TensorFlow.js teacher; `features` are layer names whose outputs `forward` returns too. */
export function tfjsTeacher(model: tf.LayersModel, inputShape: number[], features: string[] = []): Teacher {
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
  const tapped = features.length
    ? tf.model({
        inputs: model.inputs,
        outputs: [model.outputs[0]!, ...layerOutputs(model, features, 'teacher')],
      })
    : model;
  return tfjsRunTeacher({
    params: model.countParams(),
    numClasses,
    inputShape: modelInput,
    endsInSoftmax,
    outputs: (x, withFeatures) => {
      const r = (withFeatures ? tapped : model).predict(x);
      return Array.isArray(r) ? r : [r];
    },
    dispose: () => model.dispose(),
  });
}
