import * as tf from '@tensorflow/tfjs';

/**
 * Gradients that make second-order differentiation (an input gradient differentiated in the
 * weights, as the `jacobian` loss does) exact for the students Retort builds.
 *
 * TensorFlow.js saves an op's own output for its gradient as a copy recorded on the tape before the
 * op itself, so differentiating such a gradient a second time never reaches the op's input: Tanh
 * and Sigmoid gradients written in their outputs lose that path. They are re-registered here in
 * terms of their inputs (one extra elementwise op in the backward pass). MaxPoolGrad has no
 * gradient at all, so nothing could differentiate an input gradient through max-pooling.
 */
export function registerSecondOrderGradients(): void {
  if (registered) return;
  registered = true;
  tf.registerGradient({
    kernelName: 'Tanh',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      return { x: () => tf.mul(dy as tf.Tensor, tf.sub(1, tf.square(tf.tanh(x)))) };
    },
  });
  tf.registerGradient({
    kernelName: 'Sigmoid',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      return {
        x: () => {
          const y = tf.sigmoid(x);
          return tf.mul(dy as tf.Tensor, tf.mul(y, tf.sub(1, y)));
        },
      };
    },
  });
  registerMaxPoolGradGradient();
}

let registered = false;

/**
 * MaxPoolGrad routes each pooled value's gradient to the input position that held the window's
 * maximum: dx[p] = Σ_{o : argmax(o) = p} dy[o]. It is linear in dy, so its own gradient, for an
 * upstream gradient g shaped like x, reads g at each window's argmax: ∂/∂dy[o] = g[argmax(o)].
 * With respect to the input and output it is piecewise constant, so zero.
 */
function registerMaxPoolGradGradient(): void {
  tf.registerGradient({
    kernelName: 'MaxPoolGrad',
    inputsToSave: ['input', 'output'],
    gradFunc: (g, saved, attrs) => {
      const [x, y] = saved as [tf.Tensor4D, tf.Tensor4D];
      const { filterSize, strides, pad } = attrs as unknown as {
        filterSize: [number, number] | number;
        strides: [number, number] | number;
        pad: 'valid' | 'same' | number;
      };
      const gt = Array.isArray(g) ? g[0]! : g;
      return {
        dy: () => {
          const pooled = tf.maxPoolWithArgmax(x, filterSize, strides, pad, true);
          const result = pooled.result!;
          const indexes = pooled.indexes!;
          const out = tf.reshape(tf.gather(tf.reshape(gt, [-1]), tf.reshape(indexes, [-1])), result.shape);
          result.dispose();
          indexes.dispose();
          return out;
        },
        input: () => tf.zerosLike(x),
        output: () => tf.zerosLike(y),
      };
    },
  });
}
