import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fashionMnistData } from '@retort/devstack';
import type { ByteSource } from '@retort/spec';
import { isRetortError, parseSpec, type RunSpec } from '@retort/spec';
import { policyByteSource } from '@retort/uri-policy';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BackendInfo, initBackend } from './backend.js';
import { type SavedModel, saveModel } from './models/saved-model.js';
import type { Teacher } from './models/teacher.js';
import { type MetricPoint, TeacherCache, type TrainerHooks, type TrainOutcome, train } from './train.js';

const F = 'file:///usr/share/datasets/fashion-mnist';
const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const source = policyByteSource({ dataRoots: ['/usr/share/datasets', FIXTURES], allowedHosts: [] });

function smallSpec(overrides: Record<string, unknown> = {}): RunSpec {
  return parseSpec({
    kind: 'train',
    student: { preset: 'mlp', hidden: [32] },
    data: fashionMnistData(1000, 500),
    training: { epochs: 3, batchSize: 64, seed: 7, checkpointEvery: { steps: 10 } },
    ...overrides,
  });
}

interface Recorded {
  metrics: MetricPoint[];
  checkpoints: number[];
  /** Live tensors each time validation figures arrive (the end of an epoch). */
  tensorsAtEpochEnd: number[];
}

async function run(
  spec: RunSpec,
  backend: BackendInfo,
  stopAtStep?: number,
  src: ByteSource = source,
): Promise<{ outcome: TrainOutcome; rec: Recorded }> {
  const rec: Recorded = { metrics: [], checkpoints: [], tensorsAtEpochEnd: [] };
  let step = 0;
  const hooks: TrainerHooks = {
    source: src,
    loadRunModel: async () => {
      throw new Error('no runs here');
    },
    onMetrics: (points) => {
      rec.metrics.push(...points);
      if (points.some((p) => p.name === 'val_accuracy')) rec.tensorsAtEpochEnd.push(tf.memory().numTensors);
    },
    onProgress: (p) => {
      step = p.step;
    },
    onCheckpoint: async (c) => {
      rec.checkpoints.push(c.position.step);
    },
    shouldStop: () => (stopAtStep !== undefined && step >= stopAtStep ? 'cancel' : null),
    log: () => {},
  };
  return { outcome: await train(spec, hooks, backend), rec };
}

const series = (rec: Recorded, name: string) =>
  rec.metrics.filter((m) => m.name === name).map((m) => m.value);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('train', () => {
  let backend: BackendInfo;
  beforeAll(async () => {
    backend = await initBackend('wasm');
  });

  it('trains an MLP on Fashion-MNIST, logging every step and each epoch, with flat memory', async () => {
    const before = tf.memory().numTensors;
    const { outcome, rec } = await run(smallSpec(), backend);
    expect(outcome.status).toBe('succeeded');
    if (outcome.status !== 'succeeded') return;
    // 1000 examples in batches of 64 → 16 steps an epoch, 48 in all; a loss point at every one.
    expect(series(rec, 'loss')).toHaveLength(48);
    expect(series(rec, 'loss_ce')).toHaveLength(48);
    expect(series(rec, 'val_accuracy')).toHaveLength(3);
    expect(rec.metrics.filter((m) => m.name === 'loss').map((m) => m.step)).toEqual(
      [...Array(48).keys()].map((i) => i + 1),
    );
    const loss = series(rec, 'loss');
    expect(loss.slice(-5).reduce((a, b) => a + b) / 5).toBeLessThan(
      loss.slice(0, 5).reduce((a, b) => a + b) / 5,
    );
    expect(outcome.summary.student.accuracy).toBeGreaterThan(0.6);
    expect(outcome.summary.student.accuracy).toBeCloseTo(series(rec, 'val_accuracy').at(-1)!, 10);
    expect(outcome.summary.student.params).toBe(784 * 32 + 32 + 32 * 10 + 10);
    expect(outcome.summary).toMatchObject({
      steps: 48,
      epochs: 3,
      trainExamples: 1000,
      validationExamples: 500,
      backend: 'wasm',
    });
    expect(rec.checkpoints).toEqual([10, 20, 30, 40]);
    // Memory stays flat from epoch to epoch, and nothing is left behind.
    expect(new Set(rec.tensorsAtEpochEnd).size).toBe(1);
    expect(tf.memory().numTensors).toBe(before);
    expect(JSON.parse(new TextDecoder().decode(outcome.student.modelJson)).weightsManifest[0].paths).toEqual([
      'weights.bin',
    ]);
  });

  it('is deterministic: the same seed gives byte-identical weights, another seed does not', async () => {
    const spec = smallSpec({
      training: { epochs: 1, batchSize: 64, seed: 11 },
      student: { preset: 'mlp', hidden: [16], dropout: 0.3 },
    });
    const a = await run(spec, backend);
    const b = await run(spec, backend);
    const c = await run({ ...spec, training: { ...spec.training, seed: 12 } }, backend);
    if (
      a.outcome.status !== 'succeeded' ||
      b.outcome.status !== 'succeeded' ||
      c.outcome.status !== 'succeeded'
    )
      throw new Error('failed');
    expect(sha(a.outcome.student.weights)).toBe(sha(b.outcome.student.weights));
    expect(series(a.rec, 'loss')).toEqual(series(b.rec, 'loss'));
    expect(sha(a.outcome.student.weights)).not.toBe(sha(c.outcome.student.weights));
  });

  it('trains a cnn student on the wasm backend', async () => {
    const spec = smallSpec({
      student: { preset: 'cnn', filters: [4, 8], dense: [16] },
      data: fashionMnistData(512, 200),
      training: { epochs: 3, batchSize: 32, seed: 3, optimizer: { type: 'adam', learningRate: 0.003 } },
    });
    const { outcome, rec } = await run(spec, backend);
    expect(outcome.status).toBe('succeeded');
    if (outcome.status !== 'succeeded') return;
    const loss = series(rec, 'loss');
    expect(loss.slice(-5).reduce((a, b) => a + b) / 5).toBeLessThan(
      0.7 * (loss.slice(0, 5).reduce((a, b) => a + b) / 5),
    );
    expect(outcome.summary.student.accuracy).toBeGreaterThan(0.5);
    const topology = JSON.parse(new TextDecoder().decode(outcome.student.modelJson)).modelTopology;
    expect(JSON.stringify(topology)).toContain('Conv2D');
  });

  it('distils from an ONNX teacher: the student learns to agree with it', async () => {
    const spec = smallSpec({
      kind: 'distill',
      teacher: { uri: `file://${FIXTURES}fmnist-mlp-teacher.onnx`, format: 'onnx' },
      student: { preset: 'mlp', hidden: [16] },
      distillation: { losses: [{ type: 'kd', weight: 1, temperature: 4 }] },
      training: { epochs: 4, batchSize: 64, seed: 5, optimizer: { type: 'adam', learningRate: 0.004 } },
    });
    const { outcome, rec } = await run(spec, backend);
    expect(outcome.status).toBe('succeeded');
    if (outcome.status !== 'succeeded') return;
    const s = outcome.summary;
    expect(s.teacher?.runtime).toBe('onnxruntime-cpu');
    expect(s.teacher?.params).toBe(50890);
    expect(s.agreement).toBeGreaterThan(0.7);
    expect(s.accuracyRetention).toBeCloseTo(s.student.accuracy / s.teacher!.accuracy, 10);
    expect(s.compression).toBeCloseTo(50890 / s.student.params, 10);
    expect(series(rec, 'val_agreement')).toHaveLength(4);
    expect(series(rec, 'loss_kd')).toHaveLength(64);
  });

  it('loads a tfjs-layers teacher and a custom tfjs-layers student from files, holding out a validation split', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'retort-models-'));
    const write = (name: string, m: SavedModel) => {
      mkdirSync(path.join(dir, name));
      writeFileSync(path.join(dir, name, 'model.json'), m.modelJson);
      writeFileSync(path.join(dir, name, 'weights.bin'), m.weights);
    };
    // A teacher trained here and written in TensorFlow.js format, as a user would bring one.
    const trained = await run(smallSpec({ training: { epochs: 2, batchSize: 64, seed: 1 } }), backend);
    if (trained.outcome.status !== 'succeeded') throw new Error('teacher failed');
    write('teacher', trained.outcome.student);
    // A custom student topology with its starting weights.
    const custom = tf.sequential({
      layers: [
        tf.layers.flatten({ inputShape: [28, 28, 1] }),
        tf.layers.dense({ units: 20, activation: 'tanh' }),
        tf.layers.dense({ units: 10 }),
      ],
    });
    write('student', await saveModel(custom));
    custom.dispose();

    const spec = smallSpec({
      kind: 'distill',
      teacher: { uri: `file://${dir}/teacher/model.json`, format: 'tfjs-layers' },
      student: { uri: `file://${dir}/student/model.json`, format: 'tfjs-layers' },
      data: {
        train: fashionMnistData(500).train,
        validation: { split: 0.2 },
      },
      training: { epochs: 2, batchSize: 50, seed: 2 },
    });
    const src = policyByteSource({ dataRoots: ['/usr/share/datasets', dir], allowedHosts: [] });
    const { outcome } = await run(spec, backend, undefined, src);
    expect(outcome.status).toBe('succeeded');
    if (outcome.status !== 'succeeded') return;
    expect(outcome.summary).toMatchObject({ trainExamples: 400, validationExamples: 100, steps: 16 });
    expect(outcome.summary.teacher).toMatchObject({
      runtime: 'tfjs-wasm',
      params: 784 * 32 + 32 + 32 * 10 + 10,
    });
    expect(outcome.summary.student.params).toBe(784 * 20 + 20 + 20 * 10 + 10);
    expect(new TextDecoder().decode(outcome.student.modelJson)).toContain('"activation":"tanh"');
  });

  it('resumes exactly: stopped and resumed, or resumed from a periodic checkpoint, it ends byte-identical', async () => {
    const spec = smallSpec({
      student: { preset: 'mlp', hidden: [24], dropout: 0.25 },
      training: {
        epochs: 3,
        batchSize: 64,
        seed: 9,
        checkpointEvery: { steps: 7 },
        // Every part of the state a checkpoint must carry: AdamW, a schedule after warm-up, early stopping.
        optimizer: { type: 'adamw', learningRate: 0.003, weightDecay: 0.05 },
        warmupSteps: 5,
        schedule: { type: 'cosine', minLearningRate: 0.0001 },
        earlyStopping: { patience: 5 },
      },
    });
    const collect = async (resume?: Uint8Array, stopAt?: number) => {
      const metrics = new Map<string, number>();
      const checkpoints = new Map<number, Uint8Array>();
      let step = 0;
      const outcome = await train(
        spec,
        {
          source,
          loadRunModel: async () => {
            throw new Error('unused');
          },
          onMetrics: (points) => {
            for (const p of points) metrics.set(`${p.name}@${p.step}`, p.value);
          },
          onProgress: (p) => {
            step = p.step;
          },
          onCheckpoint: async (c) => {
            checkpoints.set(c.position.step, c.bytes);
          },
          shouldStop: () => (stopAt !== undefined && step >= stopAt ? 'checkpoint' : null),
          log: () => {},
        },
        backend,
        { resume },
      );
      return { outcome, metrics, checkpoints };
    };
    const whole = await collect();
    if (whole.outcome.status !== 'succeeded') throw new Error('failed');
    const expected = sha(whole.outcome.student.weights);

    // Paused three times (at steps 5, 16 and 33: mid-epoch and at an epoch's edge), resumed each time.
    const merged = new Map<string, number>();
    let resume: Uint8Array | undefined;
    let last: TrainOutcome | undefined;
    for (const stopAt of [5, 16, 33, undefined]) {
      const part = await collect(resume, stopAt);
      for (const [k, v] of part.metrics) merged.set(k, v);
      last = part.outcome;
      if (part.outcome.status === 'stopped') {
        expect(part.outcome.position.step).toBe(stopAt);
        resume = part.checkpoints.get(stopAt!);
      }
    }
    expect(last?.status).toBe('succeeded');
    if (last?.status !== 'succeeded') return;
    expect(sha(last.student.weights)).toBe(expected);
    expect(merged).toEqual(whole.metrics);

    // As after a crash: from the periodic checkpoint at step 21, the steps after it are done again.
    const fromCrash = await collect(whole.checkpoints.get(21));
    if (fromCrash.outcome.status !== 'succeeded') throw new Error('failed');
    expect(sha(fromCrash.outcome.student.weights)).toBe(expected);
    expect(fromCrash.outcome.summary.student.accuracy).toBe(whole.outcome.summary.student.accuracy);
  });

  it('stops early when the validation metric stops improving, with the best epoch as the result', async () => {
    // No epoch can beat the first by 0.5: training stops after 1 + patience epochs.
    const spec = smallSpec({
      training: { epochs: 10, batchSize: 64, seed: 4, earlyStopping: { patience: 2, minDelta: 0.5 } },
    });
    const { outcome, rec } = await run(spec, backend);
    if (outcome.status !== 'succeeded') throw new Error('failed');
    const val = series(rec, 'val_accuracy');
    expect(val).toHaveLength(3);
    expect(outcome.summary).toMatchObject({ stoppedEarly: true, bestEpoch: 1, epochs: 3 });
    // The result is epoch 1's model, whatever epochs 2 and 3 did.
    expect(outcome.summary.student.accuracy).toBe(val[0]);
    expect(outcome.summary.student.perClass.reduce((n, c) => n + c.examples, 0)).toBe(500);
    expect(outcome.summary.student.top5Accuracy).toBeGreaterThanOrEqual(outcome.summary.student.accuracy);
  });

  it('stops at the next step when asked, and says where', async () => {
    const { outcome, rec } = await run(smallSpec(), backend, 5);
    expect(outcome).toEqual({ status: 'canceled', position: { step: 5, epoch: 0, batchInEpoch: 5 } });
    expect(series(rec, 'loss')).toHaveLength(5);
  });

  it('fails with a code and an actionable message on a bad teacher or mismatched data', async () => {
    const badTeacher = smallSpec({
      kind: 'distill',
      teacher: { uri: `${F}/t10k-labels-idx1-ubyte.gz`, format: 'onnx' },
    });
    const e1 = await run(badTeacher, backend).catch((e: unknown) => e);
    expect(isRetortError(e1) && e1.code).toBe('RETORT_TEACHER_UNREADABLE');

    const badShape = smallSpec({
      data: {
        train: fashionMnistData(100).train,
        preprocess: { shape: [32, 32, 1] },
      },
    });
    const e2 = await run(badShape, backend).catch((e: unknown) => e);
    expect(isRetortError(e2) && e2.code).toBe('RETORT_DATA_INVALID');
    expect((e2 as Error).message).toMatch(/\[32, 32, 1\] holds 1024 values but each example has 784/);

    const mismatch = smallSpec({
      data: {
        train: {
          format: 'idx',
          images: `${F}/train-images-idx3-ubyte.gz`,
          labels: `${F}/t10k-labels-idx1-ubyte.gz`,
        },
      },
    });
    const e3 = await run(mismatch, backend).catch((e: unknown) => e);
    expect((e3 as Error).message).toMatch(/60000 images but 10000 labels/);
  });
});

describe('TeacherCache', () => {
  it('asks the teacher about each example once, in fixed blocks of the set, whatever the batches', async () => {
    const calls: number[][] = [];
    const n = 600; // blocks of 256: [0, 256), [256, 512), [512, 600)
    const teacher: Teacher = {
      runtime: 'test',
      params: 0,
      numClasses: 2,
      fingerprint: 'test',
      async logits(x, m) {
        calls.push([x[0]!]);
        // A function of the input, so cached rows can be checked: logit 0 = the example's value.
        const out = new Float32Array(m * 2);
        for (let i = 0; i < m; i++) out[i * 2] = x[i]!;
        return out;
      },
      async forward() {
        throw new Error('not used by the cache');
      },
      dispose() {},
    };
    const set = { x: Float32Array.from({ length: n }, (_, i) => i), y: new Int32Array(n), n, features: 1 };
    const cache = new TeacherCache(teacher, set, { scale: 1 });
    expect(Array.from(await cache.batch([300, 5]))).toEqual([300, 0, 5, 0]);
    // Blocks 1 and 0 were computed, each starting at its first example.
    expect(calls).toEqual([[256], [0]]);
    expect(cache.complete).toBe(false);
    expect(Array.from(await cache.batch([599, 0, 256]))).toEqual([599, 0, 0, 0, 256, 0]);
    expect(calls).toHaveLength(3);
    expect(cache.complete).toBe(true);
    // A stored copy loads only under its own key.
    const fresh = new TeacherCache(teacher, set, { scale: 1 });
    expect(fresh.load(cache.serialize('k1'), 'k2')).toBe(false);
    expect(fresh.load(cache.serialize('k1'), 'k1')).toBe(true);
    expect(Array.from(await fresh.batch([42]))).toEqual([42, 0]);
    expect(calls).toHaveLength(3);
  });

  it('keeps read layers and input gradients with the logits, each in its own rows', async () => {
    const n = 300;
    let forwards = 0;
    let gradients = 0;
    const teacher: Teacher = {
      runtime: 'test',
      params: 0,
      numClasses: 2,
      fingerprint: 'test',
      async logits() {
        throw new Error('forward is used when layers are read');
      },
      async forward(x, m) {
        forwards++;
        const logits = new Float32Array(m * 2);
        const feature = new Float32Array(m * 3); // per example [1, 3]: v, 2v, 3v
        for (let i = 0; i < m; i++) {
          logits[i * 2 + 1] = -x[i]!;
          for (let j = 0; j < 3; j++) feature[i * 3 + j] = (j + 1) * x[i]!;
        }
        return { logits, features: [{ data: feature, shape: [m, 1, 3] }] };
      },
      async inputGradients(x, m, labels, temperature) {
        gradients++;
        return Float32Array.from({ length: m }, (_, i) => x[i]! * temperature + labels[i]!);
      },
      dispose() {},
    };
    const set = {
      x: Float32Array.from({ length: n }, (_, i) => i),
      y: Int32Array.from({ length: n }, (_, i) => i % 2),
      n,
      features: 1,
    };
    const plan = { featureShapes: [[1, 3]], gradientTemperature: 2 };
    expect(TeacherCache.bytes(teacher, set, plan)).toBe(4 * n * (2 + 3 + 1));
    const cache = new TeacherCache(teacher, set, { scale: 1 }, plan);
    const out = await cache.outputs([7, 299]);
    expect(Array.from(out.logits)).toEqual([0, -7, 0, -299]);
    expect(out.features).toHaveLength(1);
    expect(out.features[0]!.shape).toEqual([2, 1, 3]);
    expect(Array.from(out.features[0]!.data)).toEqual([7, 14, 21, 299, 598, 897]);
    expect(Array.from(out.grad!)).toEqual([7 * 2 + 1, 299 * 2 + 1]);
    await cache.outputs([100, 200]); // the rest of block 0
    expect([forwards, gradients]).toEqual([2, 2]);
    expect(cache.complete).toBe(true);
    // A stored copy loads only into a cache of the same layout.
    const bytes = cache.serialize('k');
    expect(new TeacherCache(teacher, set, { scale: 1 }, { featureShapes: [[1, 3]] }).load(bytes, 'k')).toBe(
      false,
    );
    const fresh = new TeacherCache(teacher, set, { scale: 1 }, plan);
    expect(fresh.load(bytes, 'k')).toBe(true);
    const back = await fresh.outputs([299]);
    expect(Array.from(back.features[0]!.data)).toEqual([299, 598, 897]);
    expect(Array.from(back.grad!)).toEqual([599]);
    expect([forwards, gradients]).toEqual([2, 2]);
  });
});
