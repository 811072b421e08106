import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { onnxParamCount, onnxTeacher } from './teacher.js';

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
    expect(onnxParamCount(bytes)).toBe(expected.params);
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

  it('refuses a file that is not a model, saying so', async () => {
    await expect(onnxTeacher(new Uint8Array([1, 2, 3]), [28, 28, 1], 'teacher junk.onnx')).rejects.toThrow(
      /teacher junk.onnx is not a model ONNX Runtime can load/,
    );
  });

  it('refuses data of the wrong shape, naming both shapes', async () => {
    await expect(onnxTeacher(bytes, [32, 32, 3], 'teacher t.onnx')).rejects.toThrow(
      /takes inputs of shape \[batch, 1, 28, 28\]/,
    );
  });
});
