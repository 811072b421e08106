import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fashionMnistData } from '@retort/devstack';
import { policyByteSource } from '@retort/uri-policy';
import { describe, expect, it } from 'vitest';
import { augmentBatch } from './augment.js';
import { readLabelled, readUnlabeled } from './formats.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url));
const src = policyByteSource({ dataRoots: ['/usr/share/datasets', FIXTURES], allowedHosts: [] });
const F = `file://${FIXTURES}`;

describe('data formats written by other tools (Python csv, numpy, json)', () => {
  it('read the same 60 examples as the IDX files they came from', async () => {
    const idx = await readLabelled({ ...fashionMnistData(60).train, format: 'idx' }, 'idx', src);
    const csv = await readLabelled({ format: 'csv', uri: `${F}fmnist-60.csv`, label: 'label' }, 'csv', src);
    const npy = await readLabelled(
      { format: 'npy', features: `${F}fmnist-60-images.npy`, labels: `${F}fmnist-60-labels.npy` },
      'npy',
      src,
    );
    const jsonl = await readLabelled(
      { format: 'jsonl', uri: `${F}fmnist-60.jsonl`, features: 'image', label: 'y' },
      'jsonl',
      src,
    );
    for (const r of [csv, npy, jsonl]) {
      expect(r.n).toBe(60);
      expect(Array.from(r.y)).toEqual(Array.from(idx.y));
    }
    expect(Array.from(csv.x)).toEqual(Array.from(idx.x));
    expect(Array.from(npy.x)).toEqual(Array.from(idx.x));
    expect(npy.itemShape).toEqual([28, 28]);
    expect(csv.itemShape).toEqual([784]);
    for (let i = 0; i < idx.x.length; i++) expect(jsonl.x[i]).toBeCloseTo(idx.x[i]! / 255, 5);
  });

  it('honour limits and read unlabeled sets', async () => {
    const csv = await readLabelled({ format: 'csv', uri: `${F}fmnist-60.csv`, limit: 7 }, 'csv', src);
    expect(csv.n).toBe(7);
    const u = await readUnlabeled(
      { format: 'npy', features: `${F}fmnist-60-images.npy`, limit: 10 },
      'u',
      src,
    );
    expect(u.n).toBe(10);
    expect(u.y).toBeUndefined();
  });

  it('say what is wrong with a file, and where', async () => {
    await expect(
      readLabelled({ format: 'csv', uri: `${F}fmnist-60.csv`, label: 'class' }, '/data/train', src),
    ).rejects.toThrow(/has no column "class"/);
    await expect(
      readLabelled({ format: 'jsonl', uri: `${F}fmnist-60.jsonl` }, '/data/train', src),
    ).rejects.toThrow(/line 1 has no array "features"/);
    await expect(
      readLabelled(
        { format: 'npy', features: `${F}fmnist-60.csv`, labels: `${F}fmnist-60.csv` },
        '/data/train',
        src,
      ),
    ).rejects.toThrow(/not a NumPy .npy array/);
  });

  it('say where a file is wrong without quoting it (a file in the data roots may hold what its reader may not see)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'retort-quotes-'));
    const own = policyByteSource({ dataRoots: [dir], allowedHosts: [] });
    const cases: [string, string, RegExp][] = [
      ['cell.csv', 'label,a,b\n1,2,3\n0,s3cr3t-cell,4\n', /row 3, column 2: the value is not a number/],
      ['label.csv', 'label,a\n1,2\ns3cr3t-label,3\n', /the label at index 1 is not a class index/],
      ['header.csv', 's3cr3t-header,a\n1,2\n', /has no column "label" in its header row \(2 columns\)/],
      ['quote.csv', 'label,a\n1,"s3cr3t-quote"x\n', /not valid CSV \(CSV_[A-Z_]+ at line 2\)/],
      ['line.jsonl', '{"features": [1], "label": 0}\n{"s3cr3t-json": \n', /line 2 is not JSON/],
    ];
    for (const [file, text, message] of cases) {
      writeFileSync(path.join(dir, file), text);
      const format = file.endsWith('.csv') ? 'csv' : 'jsonl';
      const failure = await readLabelled(
        { format, uri: `file://${dir}/${file}` } as never,
        '/data/train',
        own,
      ).catch((e: Error) => e.message);
      expect([file, failure]).toEqual([file, expect.stringMatching(message)]);
      expect(failure).not.toMatch(/s3cr3t/);
    }
  });
});

describe('augmentation', () => {
  // Two 3×4 single-channel images with distinct pixel values.
  const base = () => Float32Array.from({ length: 24 }, (_, i) => i + 1);
  const mirror = (img: number[]) => [0, 1, 2].flatMap((y) => img.slice(y * 4, y * 4 + 4).reverse());

  it('flips left–right or not, and draws the same for the same seed and step', () => {
    const a = base();
    augmentBatch(a, 2, [3, 4, 1], { shift: 0, flip: true }, { scale: 1 }, 7, 3);
    for (let i = 0; i < 2; i++) {
      const orig = Array.from(base().subarray(i * 12, i * 12 + 12));
      const got = Array.from(a.subarray(i * 12, i * 12 + 12));
      expect([JSON.stringify(orig), JSON.stringify(mirror(orig))]).toContain(JSON.stringify(got));
    }
    const b = base();
    augmentBatch(b, 2, [3, 4, 1], { shift: 0, flip: true }, { scale: 1 }, 7, 3);
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it('shifts fill with what a stored 0 becomes after preprocessing', () => {
    let changed = 0;
    for (let step = 0; step < 20; step++) {
      const a = base();
      augmentBatch(
        a,
        2,
        [3, 4, 1],
        { shift: 1, flip: false },
        { scale: 1, mean: Float32Array.of(2), std: Float32Array.of(4) },
        1,
        step,
      );
      const values = Array.from(a);
      // Every value is an original pixel or the fill (0 − 2) / 4.
      expect(values.every((v) => v === -0.5 || (Number.isInteger(v) && v >= 1 && v <= 24))).toBe(true);
      if (values.some((v, i) => v !== i + 1)) changed++;
    }
    expect(changed).toBeGreaterThan(10);
  });
});
