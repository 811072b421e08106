import { describe, expect, it } from 'vitest';
import { parseSpec, validateSpec } from './validate.js';

const FMNIST = 'file:///usr/share/datasets/fashion-mnist';

/** The example spec of API.md, verbatim apart from the elided validation URIs. */
const apiExample = {
  name: 'fmnist-cnn-to-mlp',
  kind: 'distill',
  teacher: { uri: 'file:///models/fmnist-cnn.onnx', format: 'onnx' },
  student: { preset: 'mlp', hidden: [128] },
  data: {
    train: {
      format: 'idx',
      images: `${FMNIST}/train-images-idx3-ubyte.gz`,
      labels: `${FMNIST}/train-labels-idx1-ubyte.gz`,
    },
    validation: {
      format: 'idx',
      images: `${FMNIST}/t10k-images-idx3-ubyte.gz`,
      labels: `${FMNIST}/t10k-labels-idx1-ubyte.gz`,
    },
    preprocess: { scale: 0.00392156862745098, shape: [28, 28, 1] },
  },
  distillation: {
    losses: [
      { type: 'kd', weight: 0.9, temperature: 4 },
      { type: 'ce', weight: 0.1 },
    ],
  },
  training: {
    epochs: 5,
    batchSize: 128,
    optimizer: { type: 'adam', learningRate: 0.001 },
    seed: 42,
    checkpointEvery: { steps: 200 },
  },
  resources: { pool: 'default', gpus: 1 },
  priority: 50,
  tags: { pipeline: 'nightly' },
};

describe('validateSpec', () => {
  it('accepts the example spec of API.md and keeps what was given', () => {
    const spec = parseSpec(structuredClone(apiExample));
    expect(spec.teacher).toEqual(apiExample.teacher);
    expect(spec.training.checkpointEvery).toEqual({ steps: 200 });
    expect(spec.distillation.losses).toEqual(apiExample.distillation.losses);
    expect(spec.tags).toEqual({ pipeline: 'nightly' });
  });

  it('fills defaults for a minimal distillation spec', () => {
    const spec = parseSpec({
      teacher: { run: '6f1c1f3e-8d7a-4a53-9a55-1b2a3c4d5e6f' },
      student: { preset: 'mlp' },
      data: { train: apiExample.data.train },
    });
    expect(spec.kind).toBe('distill');
    expect(spec.name).toBe('distill');
    expect(spec.student).toEqual({ preset: 'mlp', hidden: [128], activation: 'relu', dropout: 0 });
    expect(spec.data.validation).toEqual({ split: 0.1 });
    expect(spec.data.preprocess.scale).toBeCloseTo(1 / 255, 12);
    expect(spec.distillation.losses).toEqual([
      { type: 'kd', weight: 0.9, temperature: 4 },
      { type: 'ce', weight: 0.1 },
    ]);
    expect(spec.training).toMatchObject({
      epochs: 5,
      batchSize: 128,
      seed: 42,
      optimizer: { type: 'adam', learningRate: 0.001 },
    });
    expect(spec.resources).toEqual({ pool: 'default', gpus: 1 });
    expect(spec.priority).toBe(50);
  });

  it('gives kind train a cross-entropy loss by default', () => {
    const spec = parseSpec({
      kind: 'train',
      student: { preset: 'cnn' },
      data: { train: apiExample.data.train },
    });
    expect(spec.distillation.losses).toEqual([{ type: 'ce', weight: 1 }]);
    expect(spec.student).toEqual({
      preset: 'cnn',
      filters: [32, 64],
      kernelSize: 3,
      dense: [128],
      dropout: 0,
    });
  });

  it('lists every problem at once, each with a JSON Pointer', () => {
    // biome-ignore lint/suspicious/noExplicitAny: the test breaks fields in ways no type allows
    const bad = structuredClone(apiExample) as any;
    bad.training.epochs = 0;
    bad.training.batchSize = 'big';
    bad.training.epoch = 3;
    bad.student.hidden = [128, -4];
    bad.data.train.labels = undefined;
    bad.distillation.losses[0].temperature = -1;
    bad.teacher.format = 'pickle';
    bad.priority = 500;
    const result = validateSpec(JSON.parse(JSON.stringify(bad)));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const paths = result.errors.map((e) => e.path).sort();
    expect(paths).toEqual(
      [
        '/data/train/labels',
        '/distillation/losses/0/temperature',
        '/priority',
        '/student/hidden/1',
        '/teacher/format',
        '/training/batchSize',
        '/training/epoch',
        '/training/epochs',
      ].sort(),
    );
    const byPath = Object.fromEntries(result.errors.map((e) => [e.path, e.message]));
    expect(byPath['/data/train/labels']).toBe('is required');
    expect(byPath['/training/epoch']).toMatch(/not a known field.*epochs/);
    expect(byPath['/training/epochs']).toBe('must be >= 1');
    expect(byPath['/teacher/format']).toMatch(/onnx.*tfjs-layers/);
  });

  it('reports the problems of the union branch the client meant, not of every branch', () => {
    const result = validateSpec({
      teacher: { run: 'not-a-uuid' },
      student: { preset: 'cnn', hidden: [10] },
      data: { train: apiExample.data.train, validation: { split: 1.5 } },
      distillation: { losses: [{ type: 'kd', temperatur: 2 }, { type: 'mse' }] },
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual(
      expect.arrayContaining([
        { path: '/teacher/run', message: 'must be a valid uuid' },
        expect.objectContaining({
          path: '/student/hidden',
          message: expect.stringMatching(/^is not a known field/),
        }),
        { path: '/data/validation/split', message: 'must be < 1' },
        expect.objectContaining({ path: '/distillation/losses/0/temperatur' }),
        {
          path: '/distillation/losses/1',
          message:
            'has type "mse"; expected one of "kd", "ce", "dkd", "hint", "attention", "rkd", "jacobian", "pseudo-label"',
        },
      ]),
    );
    expect(result.errors).toHaveLength(5);
  });

  it('checks rules that span fields', () => {
    const noTeacher = validateSpec({
      kind: 'distill',
      student: { preset: 'mlp' },
      data: { train: apiExample.data.train },
    });
    expect(noTeacher).toEqual({
      ok: false,
      errors: [{ path: '/teacher', message: 'is required when kind is "distill" (or give `teachers`)' }],
    });

    const trainWithKd = validateSpec({
      kind: 'train',
      teacher: apiExample.teacher,
      student: { preset: 'mlp' },
      data: { train: apiExample.data.train },
      distillation: { losses: [{ type: 'kd' }, { type: 'ce' }, { type: 'ce' }] },
    });
    expect(trainWithKd.ok).toBe(false);
    if (trainWithKd.ok) return;
    expect(trainWithKd.errors.map((e) => e.path)).toEqual([
      '/teacher',
      '/distillation/losses/0/type',
      '/distillation/losses/2/type',
    ]);
  });

  it('fills defaults for the optimizers, schedules, early stopping and the loss variants', () => {
    const spec = parseSpec({
      teacher: { run: '6f1c1f3e-8d7a-4a53-9a55-1b2a3c4d5e6f' },
      student: { preset: 'mlp' },
      data: { train: apiExample.data.train },
      distillation: {
        losses: [
          { type: 'kd', temperature: { from: 8, to: 2 } },
          { type: 'dkd', weight: 0.5 },
        ],
      },
      training: {
        optimizer: { type: 'adamw' },
        schedule: { type: 'step', everyEpochs: 2 },
        earlyStopping: {},
      },
    });
    expect(spec.distillation.losses).toEqual([
      { type: 'kd', weight: 1, temperature: { from: 8, to: 2, schedule: 'linear' } },
      { type: 'dkd', weight: 0.5, alpha: 1, beta: 8, temperature: 4 },
    ]);
    expect(spec.training).toMatchObject({
      optimizer: { type: 'adamw', learningRate: 0.001, weightDecay: 0.01 },
      schedule: { type: 'step', everyEpochs: 2, gamma: 0.1 },
      warmupSteps: 0,
      earlyStopping: { metric: 'val_accuracy', patience: 3, minDelta: 0 },
    });
    expect(
      parseSpec({ kind: 'train', student: { preset: 'mlp' }, data: { train: apiExample.data.train } })
        .training.schedule,
    ).toEqual({
      type: 'constant',
    });
  });

  it('asks for momentum with Nesterov, and a teacher for dkd', () => {
    const r = validateSpec({
      kind: 'train',
      student: { preset: 'mlp' },
      data: { train: apiExample.data.train },
      distillation: { losses: [{ type: 'dkd' }] },
      training: { optimizer: { type: 'sgd', nesterov: true } },
    });
    expect(r).toEqual({
      ok: false,
      errors: [
        {
          path: '/distillation/losses/0/type',
          message: '"dkd" needs a teacher; kind "train" learns from labels alone',
        },
        { path: '/training/optimizer/nesterov', message: 'needs momentum above 0' },
      ],
    });
  });

  it('rejects a body that is not an object', () => {
    expect(validateSpec([1, 2])).toEqual({
      ok: false,
      errors: [{ path: '/', message: 'must be an object' }],
    });
  });

  it('escapes JSON Pointer segments of unknown keys', () => {
    const result = validateSpec({ ...apiExample, 'a/b~c': 1 });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors[0]?.path).toBe('/a~1b~0c');
  });
});
