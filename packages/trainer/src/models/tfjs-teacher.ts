import { RetortError } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import {
  type FeatureBatch,
  labelLogProbGradients,
  logOfProbabilities,
  product,
  type Teacher,
} from './teacher.js';

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
  const read = async (t: tf.Tensor) => {
    const v = (await t.data()) as Float32Array;
    t.dispose();
    return v;
  };
  const asLogits = (v: Float32Array) => (endsInSoftmax ? logOfProbabilities(v) : v);
  // A softmax output is turned back into logits before the temperature applies.
  const logitsOf = (y: tf.Tensor) => (endsInSoftmax ? tf.log(tf.maximum(y, 1e-12)) : y);
  return {
    runtime: `tfjs-${tf.getBackend()}`,
    params: model.countParams(),
    numClasses,
    fingerprint: '',
    async logits(x, n) {
      return asLogits(
        await read(tf.tidy(() => model.predict(tf.tensor(x, [n, ...modelInput])) as tf.Tensor)),
      );
    },
    async forward(x, n) {
      const ys = tf.tidy(() => {
        const r = tapped.predict(tf.tensor(x, [n, ...modelInput]));
        return Array.isArray(r) ? r : [r];
      });
      const logits = asLogits(await read(ys[0]!));
      const feats: FeatureBatch[] = [];
      for (const y of ys.slice(1)) feats.push({ shape: y.shape, data: await read(y) });
      return { logits, features: feats };
    },
    inputGradients: (x, n, labels, temperature) =>
      labelLogProbGradients(
        (xi) => logitsOf(model.predict(xi) as tf.Tensor),
        x,
        [n, ...modelInput],
        labels,
        numClasses,
        temperature,
      ),
    dispose: () => model.dispose(),
  };
}
