import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import type { TeacherSpec } from '@retort/spec';
import { policyByteSource } from '@retort/uri-policy';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend.js';
import { loadTeacher } from './load.js';

// A graph model (TensorFlow GraphDef as JSON + weights.bin) of a network PyTorch trained, with the
// logits and hidden activations PyTorch computed: scripts/fixtures/export_tfjs_graph_teacher.py.
const DIR = new URL('../../fixtures/fmnist-mlp-graph/', import.meta.url);
const expected = JSON.parse(readFileSync(new URL('expected.json', DIR), 'utf8')) as {
  params: number;
  images: number;
  logits: number[][];
  hidden: { node: string; first2: number[][] };
};
const source = policyByteSource({ dataRoots: [fileURLToPath(DIR)], allowedHosts: [] });
const spec: TeacherSpec = { uri: new URL('model.json', DIR).toString(), format: 'tfjs-graph' };
const noRuns = async () => {
  throw new Error('unused');
};

function testImages(n: number): { x: Float32Array; y: Int32Array } {
  const images = gunzipSync(readFileSync('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz'));
  const labels = gunzipSync(readFileSync('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz'));
  const x = new Float32Array(n * 784);
  for (let i = 0; i < n * 784; i++) x[i] = images[16 + i]! / 255;
  return { x, y: Int32Array.from(labels.subarray(8, 8 + n)) };
}

describe('tfjs-graph teacher', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('gives the logits PyTorch computed, and counts the same parameters', async () => {
    const teacher = await loadTeacher(spec, [28, 28, 1], source, noRuns);
    expect(teacher.numClasses).toBe(10);
    expect(teacher.params).toBe(expected.params);
    expect(teacher.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const { x } = testImages(expected.images);
    const logits = await teacher.logits(x, expected.images);
    const flat = expected.logits.flat();
    expect(logits.length).toBe(flat.length);
    for (let i = 0; i < flat.length; i++) expect(logits[i]).toBeCloseTo(flat[i]!, 3);
    teacher.dispose();
  });

  it('returns a node’s output by name beside the logits', async () => {
    const teacher = await loadTeacher(spec, [28, 28, 1], source, noRuns, [expected.hidden.node]);
    const { x } = testImages(2);
    const { logits, features } = await teacher.forward(x, 2);
    for (let i = 0; i < 20; i++) expect(logits[i]).toBeCloseTo(expected.logits.flat()[i]!, 3);
    expect(features[0]!.shape).toEqual([2, 48]);
    const flat = expected.hidden.first2.flat();
    for (let i = 0; i < flat.length; i++) expect(features[0]!.data[i]).toBeCloseTo(flat[i]!, 3);
    teacher.dispose();
  });

  it('gives input gradients that agree with finite differences of its own log-probabilities', async () => {
    const teacher = await loadTeacher(spec, [28, 28, 1], source, noRuns);
    const { x, y } = testImages(2);
    const T = 2;
    const grad = await teacher.inputGradients!(x, 2, y, T);
    expect(grad.length).toBe(2 * 784);
    // f(x) = log softmax(z(x) / T)[label], in doubles from the teacher's logits.
    const f = async (xs: Float32Array, row: number) => {
      const z = Array.from((await teacher.logits(xs, 2)).subarray(row * 10, row * 10 + 10), (v) => v / T);
      const max = Math.max(...z);
      const lse = max + Math.log(z.reduce((a, v) => a + Math.exp(v - max), 0));
      return z[y[row]!]! - lse;
    };
    const eps = 1e-2;
    let checked = 0;
    for (const row of [0, 1])
      for (const pixel of [100, 350, 406, 600]) {
        const up = x.slice();
        const down = x.slice();
        up[row * 784 + pixel]! += eps;
        down[row * 784 + pixel]! -= eps;
        const fd = ((await f(up, row)) - (await f(down, row))) / (2 * eps);
        expect(grad[row * 784 + pixel]!).toBeCloseTo(fd, 3);
        checked++;
      }
    expect(checked).toBe(8);
    teacher.dispose();
  });

  it('names its nodes when asked for one it does not have', async () => {
    await expect(loadTeacher(spec, [28, 28, 1], source, noRuns, ['conv_1'])).rejects.toThrow(
      /no node named "conv_1" \(its nodes: image, dense\/MatMul, dense\/BiasAdd, dense\/Relu, logits\/MatMul, logits\/BiasAdd\)/,
    );
  });

  it('says which format to give when a graph model is given as tfjs-layers', async () => {
    await expect(
      loadTeacher({ ...spec, format: 'tfjs-layers' }, [28, 28, 1], source, noRuns),
    ).rejects.toThrow(/is a graph model; give its format as "tfjs-graph"/);
  });

  it('refuses data of another shape, naming both', async () => {
    await expect(loadTeacher(spec, [32, 32, 3], source, noRuns)).rejects.toThrow(
      /takes inputs of shape \[784\] but the data's examples have shape \[32, 32, 3\]/,
    );
  });
});
