import * as tf from '@tensorflow/tfjs';
import { KernelScope } from './kernel-calls.js';

/**
 * Convolution gradients for the wasm backend, written as forward convolutions so they run on
 * XNNPACK. `@tensorflow/tfjs-backend-wasm` 4.x has no Conv2DBackpropFilter at all (no conv layer
 * could train), and its Conv2DBackpropInput is a naive loop that took most of a CNN's step time.
 *
 * Filter gradient (stride s, padded input xp):
 *   dW[i, j, c, o] = Σ_{b,y,x} xp[b, y·s + i, x·s + j, c] · dy[b, y, x, o]
 * is a convolution of xp laid out as [C, H, W, B] (batch as channels) with dy laid out as
 * [OH, OW, B, O] (a filter), at dilation s; its [C, KH, KW, O] output, transposed, is dW.
 *
 * Input gradient: dx is dy, dilated by the stride and padded by (k − 1 − pad), convolved with the
 * filter flipped in space and with its in/out channels swapped.
 */

type ConvAttrs = {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
};

function convInfo(xShape: number[], filterShape: number[], attrs: ConvAttrs) {
  if (attrs.dataFormat === 'NCHW') throw new Error('conv gradients on wasm support NHWC only');
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
}

export function conv2DBackpropFilter(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs: tf.NamedAttrMap;
}) {
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
  const info = convInfo(x.shape, attrs.filterShape, attrs);
  const { filterHeight: kh, filterWidth: kw, inChannels: c, outChannels: o, padInfo: p } = info;
  const s = new KernelScope(args.backend);
  try {
    const xp = s.pad(x, [
      [0, 0],
      [p.top, p.bottom],
      [p.left, p.right],
      [0, 0],
    ]);
    const xt = s.transpose(xp, [3, 1, 2, 0]); // [C, H, W, B]
    const f = s.transpose(dy, [1, 2, 0, 3]); // [OH, OW, B, O]
    const r = s.conv(
      xt,
      f,
      [
        [0, 0],
        [0, 0],
      ],
      [info.strideHeight, info.strideWidth],
    );
    const r2 = s.slice(r, [0, 0, 0, 0], [c, kh, kw, o]);
    return s.close(s.transpose(r2, [1, 2, 0, 3]));
  } catch (e) {
    s.dispose();
    throw e;
  }
}

function makeConv2DBackpropInput(original: tf.KernelFunc) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs: tf.NamedAttrMap }) => {
    const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const attrs = args.attrs as unknown as ConvAttrs & { inputShape: [number, number, number, number] };
    const info = convInfo(attrs.inputShape, filter.shape, attrs);
    const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, padInfo: p } = info;
    const [b, h, w, c] = attrs.inputShape;
    const [, oh, ow, o] = dy.shape as [number, number, number, number];
    const top = kh - 1 - p.top;
    const left = kw - 1 - p.left;
    // After dilation (zeros after every row but appended, so oh·sh rows), what must the bottom hold?
    let bottom = h + kh - 1 - oh * sh - top;
    let right = w + kw - 1 - ow * sw - left;
    // Odd explicit paddings that would need real rows cut off: leave them to the original kernel.
    if (top < 0 || left < 0 || bottom < -(sh - 1) || right < -(sw - 1)) return original(args);
    const s = new KernelScope(args.backend);
    try {
      let d = dy;
      if (sh > 1 || sw > 1) {
        const d6 = s.reshape(dy, [b, oh, 1, ow, 1, o]);
        const padded = s.pad(d6, [
          [0, 0],
          [0, 0],
          [0, sh - 1],
          [0, 0],
          [0, sw - 1],
          [0, 0],
        ]);
        d = s.reshape(padded, [b, oh * sh, ow * sw, o]);
      }
      if (bottom < 0 || right < 0) {
        // Only the zeros that dilation appended are cut.
        d = s.slice(d, [0, 0, 0, 0], [b, oh * sh + Math.min(bottom, 0), ow * sw + Math.min(right, 0), o]);
        bottom = Math.max(bottom, 0);
        right = Math.max(right, 0);
      }
      const flipped = s.run('Reverse', { x: filter }, { dims: [0, 1] });
      const wt = s.transpose(flipped, [0, 1, 3, 2]); // [KH, KW, O, C]
      const dx = s.conv(d, wt, [
        [top, bottom],
        [left, right],
      ]);
      if (dx.shape[3] !== c) throw new Error('internal: channel mismatch in Conv2DBackpropInput');
      return s.close(dx);
    } catch (e) {
      s.dispose();
      throw e;
    }
  };
}

let stockInput: tf.KernelConfig | undefined;

/**
 * Registers Conv2DBackpropFilter and replaces Conv2DBackpropInput for wasm. Must run after
 * `tf.setBackend('wasm')` so the original input-gradient kernel has been set up (it stays the
 * fallback for paddings the composition does not cover). `enabled: false` puts the stock
 * Conv2DBackpropInput back (benchmarks compare the two); the filter gradient has no stock kernel.
 */
export function installWasmConvGradients(enabled = true): void {
  if (!tf.getKernel('Conv2DBackpropFilter', 'wasm')) {
    tf.registerKernel({
      kernelName: 'Conv2DBackpropFilter',
      backendName: 'wasm',
      kernelFunc: conv2DBackpropFilter as tf.KernelFunc,
    });
  }
  stockInput ??= tf.getKernel('Conv2DBackpropInput', 'wasm');
  if (!stockInput) return;
  tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
  tf.registerKernel(
    enabled
      ? {
          kernelName: 'Conv2DBackpropInput',
          backendName: 'wasm',
          kernelFunc: makeConv2DBackpropInput(stockInput.kernelFunc) as tf.KernelFunc,
        }
      : stockInput,
  );
}
