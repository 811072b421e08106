import { readFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parseIdx } from './idx.js';

const DIR = '/usr/share/datasets/fashion-mnist';

function counts(labels: ArrayLike<number>): number[] {
  const c = new Array(10).fill(0);
  for (let i = 0; i < labels.length; i++) c[labels[i]!]++;
  return c;
}

describe('IDX reader on the real Fashion-MNIST files', () => {
  it('reads the training images (gzip) as 60,000 × 28 × 28 bytes', () => {
    const a = parseIdx(readFileSync(`${DIR}/train-images-idx3-ubyte.gz`), 'train images');
    expect(a.shape).toEqual([60000, 28, 28]);
    expect(a.data).toBeInstanceOf(Uint8Array);
    expect(a.data.length).toBe(60000 * 784);
    let max = 0;
    for (const v of a.data) if (v > max) max = v;
    expect(max).toBe(255);
  });

  it('reads the labels: 6,000 of each class in training, 1,000 of each in test', () => {
    const train = parseIdx(readFileSync(`${DIR}/train-labels-idx1-ubyte.gz`), 'train labels');
    const test = parseIdx(readFileSync(`${DIR}/t10k-labels-idx1-ubyte.gz`), 'test labels');
    expect(train.shape).toEqual([60000]);
    expect(test.shape).toEqual([10000]);
    expect(counts(train.data)).toEqual(new Array(10).fill(6000));
    expect(counts(test.data)).toEqual(new Array(10).fill(1000));
  });

  it('reads raw (uncompressed) files the same as gzip ones, and honours a limit', () => {
    const gz = readFileSync(`${DIR}/t10k-images-idx3-ubyte.gz`);
    const raw = gunzipSync(gz);
    const a = parseIdx(gz, 'gz', 100);
    const b = parseIdx(raw, 'raw', 100);
    expect(a.shape).toEqual([100, 28, 28]);
    expect(Buffer.from(a.data as Uint8Array).equals(Buffer.from(b.data as Uint8Array))).toBe(true);
    // The first test image's header-adjacent bytes, as the file stores them.
    expect(Buffer.from(a.data.subarray(0, 784) as Uint8Array).equals(raw.subarray(16, 16 + 784))).toBe(true);
  });

  it('rejects files that are not IDX with a reason', () => {
    expect(() => parseIdx(new Uint8Array([1, 2, 3, 4, 5]), 'junk')).toThrow(
      /junk is not a valid IDX file: bad magic/,
    );
    const truncated = gunzipSync(readFileSync(`${DIR}/t10k-labels-idx1-ubyte.gz`)).subarray(0, 100);
    expect(() => parseIdx(truncated, 'short')).toThrow(/expected 10000 data bytes/);
  });

  it('skips the first examples with an offset', () => {
    const raw = gunzipSync(readFileSync(`${DIR}/t10k-labels-idx1-ubyte.gz`));
    const all = parseIdx(raw, 'labels');
    const tail = parseIdx(raw, 'labels', 5, 9990);
    expect(tail.shape).toEqual([5]);
    expect(Array.from(tail.data)).toEqual(Array.from(all.data.subarray(9990, 9995)));
    expect(parseIdx(raw, 'labels', undefined, 9998).shape).toEqual([2]);
  });

  it('stops a gzip bomb at the inflation cap instead of filling memory', () => {
    const bomb = gzipSync(new Uint8Array(8 * 2 ** 20)); // 8 MiB of zeros, about 8 KiB compressed
    expect(bomb.byteLength).toBeLessThan(64 * 1024);
    expect(() => parseIdx(bomb, 'bomb.gz', undefined, 0, 2 ** 20)).toThrow(
      /bomb.gz is not a valid IDX file: it inflates to more than 1048576 bytes/,
    );
  });
});
