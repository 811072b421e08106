import { RetortError, type StudentSpec } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import { deriveSeed } from '../random.js';

/** Glorot-uniform init whose seed derives from the run seed and the layer's position. */
const init = (seed: number, layer: number) =>
  tf.initializers.glorotUniform({ seed: deriveSeed(seed, 'init', layer) });

/** How many parameters `buildPreset` would make, worked out before any weight is allocated. */
export function presetParams(
  spec: Extract<StudentSpec, { preset: string }>,
  inputShape: number[],
  numClasses: number,
): number {
  let params = 0;
  let width: number;
  let dense: number[];
  if (spec.preset === 'mlp') {
    width = inputShape.reduce((a, b) => a * b, 1);
    dense = spec.hidden;
  } else {
    let [h, w, c] = inputShape as [number, number, number];
    for (const f of spec.filters) {
      params += (spec.kernelSize * spec.kernelSize * c + 1) * f;
      c = f;
      h = Math.floor(h / 2);
      w = Math.floor(w / 2);
    }
    width = h * w * c;
    dense = spec.dense;
  }
  for (const units of [...dense, numClasses]) {
    params += (width + 1) * units;
    width = units;
  }
  return params;
}

/**
 * Builds a preset model. It outputs logits (no softmax): the losses work on logits, and a user of
 * the exported model gets the same class ranking either way.
 */
export function buildPreset(
  spec: Extract<StudentSpec, { preset: string }>,
  inputShape: number[],
  numClasses: number,
  seed: number,
): tf.LayersModel {
  const layers: tf.layers.Layer[] = [];
  let n = 0;
  const dense = (units: number, activation: 'relu' | 'tanh' | 'gelu' | 'linear', name: string) =>
    tf.layers.dense({ units, activation, kernelInitializer: init(seed, n++), name });
  const dropout = (rate: number, name: string) => {
    if (rate > 0) layers.push(tf.layers.dropout({ rate, name }));
  };
  if (spec.preset === 'mlp') {
    layers.push(tf.layers.flatten({ inputShape, name: 'flatten' }));
    spec.hidden.forEach((units, i) => {
      layers.push(dense(units, spec.activation, `dense_${i + 1}`));
      dropout(spec.dropout, `dropout_${i + 1}`);
    });
  } else {
    if (inputShape.length !== 3) {
      throw new RetortError(
        'RETORT_MODEL_INCOMPATIBLE',
        `the cnn preset needs images shaped [height, width, channels]; the data gives [${inputShape.join(', ')}] (set data.preprocess.shape)`,
      );
    }
    spec.filters.forEach((filters, i) => {
      layers.push(
        tf.layers.conv2d({
          ...(i === 0 ? { inputShape } : {}),
          filters,
          kernelSize: spec.kernelSize,
          padding: 'same',
          activation: 'relu',
          kernelInitializer: init(seed, n++),
          name: `conv_${i + 1}`,
        }),
        tf.layers.maxPooling2d({ poolSize: 2, name: `pool_${i + 1}` }),
      );
    });
    layers.push(tf.layers.flatten({ name: 'flatten' }));
    spec.dense.forEach((units, i) => {
      layers.push(dense(units, 'relu', `dense_${i + 1}`));
      dropout(spec.dropout, `dropout_${i + 1}`);
    });
  }
  layers.push(dense(numClasses, 'linear', 'logits'));
  return tf.sequential({ layers, name: spec.preset });
}

/**
 * Points every dropout layer at a seed for this step, so that the masks of step k are the same
 * whether or not the run was interrupted before it. (tfjs's Dropout reads `seed` at each call.)
 */
export function seedDropout(model: tf.LayersModel, seed: number, step: number): void {
  model.layers.forEach((layer, i) => {
    if (layer.getClassName() === 'Dropout')
      (layer as unknown as { seed: number }).seed = deriveSeed(seed, 'dropout', step, i);
  });
}
