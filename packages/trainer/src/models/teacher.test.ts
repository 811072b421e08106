import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeOnnx, onnxParamCount, onnxTeacher } from './onnx-teacher.js';

const FIXTURES = new URL('../../fixtures/', import.meta.url);
const expected = JSON.parse(readFileSync(new URL('fmnist-mlp-teacher.expected.json', FIXTURES), 'utf8')) as {
  params: number;
  logitsFirst8Test: number[][];
  accuracyFirst1000Test: number;
};

function testImages(n: number): { x: Float32Array; y: Uint8Array } {
  const images = gunzipSync(readFileSync('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz'));
  const labels = gunzipSync(readFileSync('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz'));
  const x = new Float32Array(n * 784);
  for (let i = 0; i < n * 784; i++) x[i] = images[16 + i]! / 255;
  return { x, y: labels.subarray(8, 8 + n) };
}

describe('ONNX teacher exported by PyTorch', () => {
  const bytes = readFileSync(new URL('fmnist-mlp-teacher.onnx', FIXTURES));

  it('counts the parameters PyTorch reported', () => {
    expect(onnxParamCount(decodeOnnx(bytes, 'fixture'))).toBe(expected.params);
  });

  it('gives the logits PyTorch computed, from images laid out NHWC as Retort holds them', async () => {
    const teacher = await onnxTeacher(bytes, [28, 28, 1], 'fixture');
    expect(teacher.numClasses).toBe(10);
    expect(teacher.runtime).toBe('onnxruntime-cpu');
    const { x } = testImages(8);
    const logits = await teacher.logits(x, 8);
    const flat = expected.logitsFirst8Test.flat();
    expect(logits.length).toBe(flat.length);
    for (let i = 0; i < flat.length; i++) expect(logits[i]).toBeCloseTo(flat[i]!, 4);
    teacher.dispose();
  });

  it('classifies the first 1,000 test images as it did in PyTorch', async () => {
    const teacher = await onnxTeacher(bytes, [28, 28, 1], 'fixture');
    const { x, y } = testImages(1000);
    const logits = await teacher.logits(x, 1000);
    let hits = 0;
    for (let i = 0; i < 1000; i++) {
      const row = Array.from(logits.subarray(i * 10, i * 10 + 10));
      if (row.indexOf(Math.max(...row)) === y[i]) hits++;
    }
    expect(hits / 1000).toBeCloseTo(expected.accuracyFirst1000Test, 3);
    teacher.dispose();
  });

  it('asked for CUDA where ONNX Runtime has no CUDA provider, runs on CPU and says why', async () => {
    const logs: string[] = [];
    const teacher = await onnxTeacher(bytes, [28, 28, 1], 'fixture', [], {
      cuda: true,
      log: (m) => logs.push(m),
    });
    expect(teacher.runtime).toBe('onnxruntime-cpu');
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/CUDA provider is not available \(.+\); the teacher runs on CPU/);
    const { x } = testImages(8);
    const logits = await teacher.logits(x, 8);
    for (let i = 0; i < 10; i++) expect(logits[i]).toBeCloseTo(expected.logitsFirst8Test[0]![i]!, 4);
    teacher.dispose();
  });

  it('refuses a file that is not a model, saying so', async () => {
    await expect(onnxTeacher(new Uint8Array([1, 2, 3]), [28, 28, 1], 'teacher junk.onnx')).rejects.toThrow(
      /teacher junk.onnx is not an ONNX model/,
    );
  });

  it('refuses data of the wrong shape, naming both shapes', async () => {
    await expect(onnxTeacher(bytes, [32, 32, 3], 'teacher t.onnx')).rejects.toThrow(
      /takes inputs of shape \[batch, 1, 28, 28\]/,
    );
  });
});

describe('ONNX teacher: intermediate outputs by node name', () => {
  const bytes = readFileSync(new URL('fmnist-cnn-teacher.onnx', FIXTURES));
  const cnn = JSON.parse(readFileSync(new URL('fmnist-cnn-teacher.expected.json', FIXTURES), 'utf8')) as {
    params: number;
    logitsFirst2Test: number[][];
    block1First2TestNHWC: number[][][][];
  };

  it('returns the feature map PyTorch computed, as NHWC, beside the logits', async () => {
    const teacher = await onnxTeacher(bytes, [28, 28, 1], 'cnn', ['/block1/block1.1/Relu']);
    expect(onnxParamCount(decodeOnnx(bytes, 'fixture'))).toBe(cnn.params);
    const { x } = testImages(2);
    const { logits, features } = await teacher.forward(x, 2);
    const flat = cnn.logitsFirst2Test.flat();
    for (let i = 0; i < flat.length; i++) expect(logits[i]).toBeCloseTo(flat[i]!, 4);
    expect(features[0]!.shape).toEqual([2, 28, 28, 8]);
    const expectedMap = cnn.block1First2TestNHWC.flat(3);
    let maxErr = 0;
    for (let i = 0; i < expectedMap.length; i++)
      maxErr = Math.max(maxErr, Math.abs(features[0]!.data[i]! - expectedMap[i]!));
    expect(maxErr).toBeLessThan(1e-4);
    teacher.dispose();
  });

  it('names the nodes it has when asked for one it does not', async () => {
    await expect(onnxTeacher(bytes, [28, 28, 1], 'cnn', ['conv9'])).rejects.toThrow(
      /cnn has no node or value named "conv9" \(its nodes: \/block1\/block1.0\/Conv/,
    );
  });
});
