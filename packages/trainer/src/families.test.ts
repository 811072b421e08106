import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fashionMnistData } from '@retort/devstack';
import { parseSpec, type RunSpec } from '@retort/spec';
import { policyByteSource } from '@retort/uri-policy';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BackendInfo, initBackend } from './backend.js';
import { type MetricPoint, type TrainOutcome, train } from './train.js';

/** Every family of knowledge transfer, trained for a few steps on real data and real teachers. */

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const ONNX_MLP = { uri: `file://${FIXTURES}fmnist-mlp-teacher.onnx`, format: 'onnx' };
const ONNX_CNN = { uri: `file://${FIXTURES}fmnist-cnn-teacher.onnx`, format: 'onnx' };
const CNN_STUDENT = { preset: 'cnn', filters: [4, 8], dense: [16] };
const scratch = mkdtempSync(path.join(tmpdir(), 'retort-families-'));
const source = policyByteSource({ dataRoots: ['/usr/share/datasets', FIXTURES, scratch], allowedHosts: [] });

async function run(
  input: Record<string, unknown>,
  backend: BackendInfo,
  o: { stopAt?: number; resume?: Uint8Array; cache?: Map<string, Uint8Array> } = {},
) {
  const spec: RunSpec = parseSpec({ kind: 'distill', data: fashionMnistData(512, 200), ...input });
  const metrics: MetricPoint[] = [];
  const checkpoints = new Map<number, Uint8Array>();
  let step = 0;
  const outcome: TrainOutcome = await train(
    spec,
    {
      source,
      loadRunModel: async () => {
        throw new Error('unused');
      },
      onMetrics: (p) => metrics.push(...p),
      onProgress: (p) => {
        step = p.step;
      },
      onCheckpoint: async (c) => {
        checkpoints.set(c.position.step, c.bytes);
      },
      shouldStop: () => (o.stopAt !== undefined && step >= o.stopAt ? 'checkpoint' : null),
      log: () => {},
      ...(o.cache
        ? {
            teacherCache: {
              load: async (key: string) => o.cache!.get(key) ?? null,
              store: async (key: string, bytes: Uint8Array) => {
                o.cache!.set(key, bytes);
              },
            },
          }
        : {}),
    },
    backend,
    { resume: o.resume },
  );
  const series = (name: string) => metrics.filter((m) => m.name === name).map((m) => m.value);
  return { outcome, series, checkpoints, metrics };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** The term's loss fell: the mean of its last five steps is below that of its first five. */
const fell = (xs: number[]) => mean(xs.slice(-5)) < mean(xs.slice(0, 5));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('knowledge-transfer families', { timeout: 120_000 }, () => {
  let backend: BackendInfo;
  beforeAll(async () => {
    backend = await initBackend('wasm');
  });

  it('hint (FitNets) from an ONNX CNN teacher’s feature map, through a learned adapter; the map cached', async () => {
    const spec = {
      teacher: ONNX_CNN,
      student: CNN_STUDENT,
      distillation: {
        losses: [
          { type: 'ce', weight: 0.5 },
          { type: 'hint', student: 'conv_1', teacher: '/block1/block1.1/Relu' },
        ],
      },
      training: { epochs: 3, batchSize: 32, seed: 1, optimizer: { type: 'adam', learningRate: 0.003 } },
    };
    const cache = new Map<string, Uint8Array>();
    const { outcome, series } = await run(spec, backend, { cache });
    expect(outcome.status).toBe('succeeded');
    // The feature map (14×14×16 per example) is kept with the logits, and a later run reads it.
    expect([...cache.values()][0]!.byteLength).toBeGreaterThan(512 * 14 * 14 * 16 * 4);
    const again = await run(spec, backend, { cache });
    const uncached = await run(
      { ...spec, distillation: { ...spec.distillation, teacherCache: 'off' } },
      backend,
    );
    if (
      outcome.status !== 'succeeded' ||
      again.outcome.status !== 'succeeded' ||
      uncached.outcome.status !== 'succeeded'
    )
      throw new Error('failed');
    expect([outcome.summary.teacherCache, again.outcome.summary.teacherCache]).toEqual(['stored', 'hit']);
    expect(sha(again.outcome.student.weights)).toBe(sha(outcome.student.weights));
    expect(sha(uncached.outcome.student.weights)).toBe(sha(outcome.student.weights));
    expect(series('loss_hint')).toHaveLength(48);
    expect(fell(series('loss_hint'))).toBe(true);
    // The adapter trained alongside is not part of the student that comes out.
    if (outcome.status === 'succeeded')
      expect(new TextDecoder().decode(outcome.student.modelJson)).not.toContain('adapter');
  });

  it('attention transfer between conv feature maps', async () => {
    const { outcome, series } = await run(
      {
        teacher: ONNX_CNN,
        student: CNN_STUDENT,
        distillation: {
          losses: [
            { type: 'ce', weight: 0.5 },
            { type: 'attention', weight: 100, student: 'conv_1', teacher: '/block1/block1.1/Relu' },
          ],
        },
        training: { epochs: 3, batchSize: 32, seed: 1, optimizer: { type: 'adam', learningRate: 0.003 } },
      },
      backend,
    );
    expect(outcome.status).toBe('succeeded');
    expect(fell(series('loss_attention'))).toBe(true);
  });

  it('resumes exactly with adapters and feature losses in play', async () => {
    const input = {
      teacher: ONNX_CNN,
      student: CNN_STUDENT,
      distillation: {
        losses: [
          { type: 'kd', weight: 0.5 },
          { type: 'hint', student: 'conv_2', teacher: '/block2/block2.1/Relu' },
          { type: 'attention', weight: 10, student: 'conv_1', teacher: '/block1/block1.1/Relu' },
        ],
      },
      training: { epochs: 2, batchSize: 32, seed: 2 },
    };
    const whole = await run(input, backend);
    const first = await run(input, backend, { stopAt: 11 });
    expect(first.outcome.status).toBe('stopped');
    const rest = await run(input, backend, { resume: first.checkpoints.get(11)! });
    if (whole.outcome.status !== 'succeeded' || rest.outcome.status !== 'succeeded')
      throw new Error('failed');
    expect(sha(rest.outcome.student.weights)).toBe(sha(whole.outcome.student.weights));
  });

  it('relational KD on the logits', async () => {
    const { outcome, series } = await run(
      {
        teacher: ONNX_MLP,
        student: { preset: 'mlp', hidden: [32] },
        distillation: {
          losses: [
            { type: 'ce', weight: 0.2 },
            { type: 'rkd', weight: 1 },
          ],
        },
        training: { epochs: 3, batchSize: 32, seed: 1 },
      },
      backend,
    );
    expect(outcome.status).toBe('succeeded');
    expect(fell(series('loss_rkd'))).toBe(true);
  });

  it('jacobian (gradient matching) with a TensorFlow.js teacher, for MLP and CNN students; refused for an ONNX teacher', async () => {
    // A teacher in TensorFlow.js format: a small MLP trained here for a few steps.
    const teacher = await run(
      { kind: 'train', student: { preset: 'mlp', hidden: [32] }, training: { epochs: 2, batchSize: 32 } },
      backend,
    );
    if (teacher.outcome.status !== 'succeeded') throw new Error('teacher failed');
    mkdirSync(path.join(scratch, 'tfjs-teacher'), { recursive: true });
    writeFileSync(path.join(scratch, 'tfjs-teacher', 'model.json'), teacher.outcome.student.modelJson);
    writeFileSync(path.join(scratch, 'tfjs-teacher', 'weights.bin'), teacher.outcome.student.weights);
    const spec = {
      teacher: { uri: `file://${scratch}/tfjs-teacher/model.json`, format: 'tfjs-layers' },
      student: { preset: 'mlp', hidden: [16] },
      distillation: {
        losses: [
          { type: 'kd', weight: 0.5 },
          { type: 'jacobian', weight: 1, temperature: 2 },
        ],
      },
      training: { epochs: 3, batchSize: 32, seed: 1 },
    };
    const { outcome, series } = await run(spec, backend);
    expect(outcome.status).toBe('succeeded');
    expect(series('loss_jacobian')).toHaveLength(48);
    expect(fell(series('loss_jacobian'))).toBe(true);
    // The teacher's input gradients are kept with its logits: a later run reads them, same result.
    const cache = new Map<string, Uint8Array>();
    const stored = await run(spec, backend, { cache });
    const hit = await run(spec, backend, { cache });
    if (
      outcome.status !== 'succeeded' ||
      stored.outcome.status !== 'succeeded' ||
      hit.outcome.status !== 'succeeded'
    )
      throw new Error('failed');
    expect([stored.outcome.summary.teacherCache, hit.outcome.summary.teacherCache]).toEqual([
      'stored',
      'hit',
    ]);
    expect([...cache.values()][0]!.byteLength).toBeGreaterThan(512 * 784 * 4);
    expect(sha(hit.outcome.student.weights)).toBe(sha(outcome.student.weights));
    expect(sha(stored.outcome.student.weights)).toBe(sha(outcome.student.weights));
    // A CNN student: its input gradient passes through convolution and max-pooling.
    const cnn = await run(
      {
        ...spec,
        student: { preset: 'cnn', filters: [4], dense: [8] },
        training: { epochs: 2, batchSize: 32, seed: 1 },
      },
      backend,
    );
    expect(cnn.outcome.status).toBe('succeeded');
    expect(cnn.series('loss_jacobian').every(Number.isFinite)).toBe(true);
    expect(fell(cnn.series('loss_jacobian'))).toBe(true);
    await expect(run({ ...spec, teacher: ONNX_MLP }, backend)).rejects.toThrow(
      /jacobian loss needs the teacher's input gradients/,
    );
  });

  it('pseudo-labels: the teacher labels unlabeled images, the student learns from them too', async () => {
    const { outcome, series } = await run(
      {
        teacher: ONNX_MLP,
        student: { preset: 'mlp', hidden: [32] },
        data: {
          ...fashionMnistData(256, 200),
          unlabeled: {
            format: 'idx',
            images: 'file:///usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz',
            offset: 5000,
            limit: 1000,
          },
        },
        distillation: { losses: [{ type: 'ce' }, { type: 'pseudo-label', mode: 'hard', threshold: 0.8 }] },
        training: { epochs: 4, batchSize: 32, seed: 1 },
      },
      backend,
    );
    expect(outcome.status).toBe('succeeded');
    const pl = series('loss_pseudo-label');
    expect(pl).toHaveLength(32);
    expect(pl.every(Number.isFinite)).toBe(true);
    expect(fell(pl)).toBe(true);
  });

  it('several teachers: their distributions mixed by weight into one soft target', async () => {
    const { outcome } = await run(
      {
        teachers: [
          { ...ONNX_MLP, weight: 2 },
          { ...ONNX_CNN, weight: 1 },
        ],
        student: { preset: 'mlp', hidden: [16] },
        distillation: { losses: [{ type: 'kd', weight: 1, temperature: 2 }] },
        training: { epochs: 2, batchSize: 32 },
      },
      backend,
    );
    if (outcome.status !== 'succeeded') throw new Error('failed');
    expect(outcome.summary.teacher?.params).toBe(50890 + 9098);
    expect(outcome.summary.teacher?.runtime).toBe('onnxruntime-cpu');
    expect(outcome.summary.agreement).toBeGreaterThan(0.3); // chance is about 0.1
  });

  it('trains from CSV and NPY files, normalised per channel, with augmentation', async () => {
    const F = `file://${FIXTURES}`;
    const { outcome, series } = await run(
      {
        kind: 'train',
        student: { preset: 'cnn', filters: [4], dense: [8] },
        data: {
          train: { format: 'csv', uri: `${F}fmnist-60.csv` },
          validation: {
            format: 'npy',
            features: `${F}fmnist-60-images.npy`,
            labels: `${F}fmnist-60-labels.npy`,
          },
          preprocess: { shape: [28, 28, 1], mean: [0.286], std: [0.353] },
          augment: { shift: 2, flip: true },
        },
        training: { epochs: 3, batchSize: 20, seed: 3 },
      },
      backend,
    );
    expect(outcome.status).toBe('succeeded');
    expect(series('loss')).toHaveLength(9);
    if (outcome.status === 'succeeded')
      expect(outcome.summary).toMatchObject({ trainExamples: 60, validationExamples: 60 });
  });

  it('stores the teacher’s outputs once and reuses them in later runs, with identical results', async () => {
    const cache = new Map<string, Uint8Array>();
    const input = {
      teacher: ONNX_MLP,
      student: { preset: 'mlp', hidden: [16] },
      training: { epochs: 2, batchSize: 32, seed: 8 },
    };
    const first = await run(input, backend, { cache });
    const second = await run(input, backend, { cache });
    const uncached = await run(
      {
        ...input,
        distillation: {
          teacherCache: 'off',
          losses: [
            { type: 'kd', weight: 0.9 },
            { type: 'ce', weight: 0.1 },
          ],
        },
      },
      backend,
      {
        cache,
      },
    );
    if (
      first.outcome.status !== 'succeeded' ||
      second.outcome.status !== 'succeeded' ||
      uncached.outcome.status !== 'succeeded'
    ) {
      throw new Error('failed');
    }
    expect(first.outcome.summary.teacherCache).toBe('stored');
    expect(second.outcome.summary.teacherCache).toBe('hit');
    expect(uncached.outcome.summary.teacherCache).toBe('computed');
    expect(cache.size).toBe(1);
    expect([...cache.values()][0]!.byteLength).toBeGreaterThan(512 * 10 * 4);
    expect(sha(second.outcome.student.weights)).toBe(sha(first.outcome.student.weights));
    expect(sha(uncached.outcome.student.weights)).toBe(sha(first.outcome.student.weights));
    // Other data, another key.
    const other = await run({ ...input, data: fashionMnistData(300, 200) }, backend, { cache });
    if (other.outcome.status === 'succeeded') expect(other.outcome.summary.teacherCache).toBe('stored');
    expect(cache.size).toBe(2);
  });
});
