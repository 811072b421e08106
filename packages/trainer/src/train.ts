import { RetortError, type RunSpec, type RunSummary } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import type { BackendInfo } from './backend.js';
import { type CheckpointData, encodeCheckpoint, type TrainingPosition } from './checkpoint.js';
import { type Datasets, gatherScaled, type LabelledSet, loadDatasets } from './data/dataset.js';
import { summarize } from './evaluate.js';
import { accuracy, agreement, meanCrossEntropy } from './evaluation.js';
import { predictLogits, teacherLogits } from './inference.js';
import type { ByteSource } from './io.js';
import { lossTerms } from './losses.js';
import { loadStudent, loadTeacher, type RunModelLoader } from './models/load.js';
import { seedDropout } from './models/presets.js';
import { type SavedModel, saveModel } from './models/saved-model.js';
import type { Teacher } from './models/teacher.js';
import { deriveSeed, permutation } from './random.js';

export interface MetricPoint {
  name: string;
  step: number;
  value: number;
}

export interface Progress extends TrainingPosition {
  totalSteps: number;
  /** Live tensors, so callers (and tests) can see that memory stays flat. */
  tensors: number;
}

/** How the trainer talks to the world. The worker backs it with IPC to Postgres; the CLI with files. */
export interface TrainerHooks {
  source: ByteSource;
  loadRunModel: RunModelLoader;
  /** Points arrive in batches; the trainer never waits on where they go. */
  onMetrics(points: MetricPoint[]): void;
  onProgress(p: Progress): void;
  /** Training waits for the checkpoint to be stored before it goes on. */
  onCheckpoint(c: CheckpointData): Promise<void>;
  /** Polled before every step; `cancel` stops the run there. */
  shouldStop(): 'cancel' | null;
  log(message: string): void;
}

export type TrainOutcome =
  | { status: 'succeeded'; summary: RunSummary; student: SavedModel }
  | { status: 'canceled'; position: TrainingPosition };

/** Loss values are read back from the device this often, not every step, so GPUs are not stalled. */
const METRIC_FLUSH_STEPS = 25;

function makeOptimizer(spec: RunSpec): tf.Optimizer {
  const o = spec.training.optimizer;
  if (o.type === 'sgd')
    return o.momentum > 0 ? tf.train.momentum(o.learningRate, o.momentum) : tf.train.sgd(o.learningRate);
  return tf.train.adam(o.learningRate);
}

/**
 * Teacher outputs for the training set, filled the first time each example is seen: with no
 * augmentation an example's teacher logits never change, so epochs after the first pay only for
 * the student.
 */
export class TeacherCache {
  private readonly logits: Float32Array;
  private readonly known: Uint8Array;
  constructor(
    private readonly teacher: Teacher,
    private readonly set: LabelledSet,
  ) {
    this.logits = new Float32Array(set.n * teacher.numClasses);
    this.known = new Uint8Array(set.n);
  }

  async batch(idx: Int32Array, x: Float32Array): Promise<Float32Array> {
    const k = this.teacher.numClasses;
    const f = this.set.features;
    const missing: number[] = [];
    for (let i = 0; i < idx.length; i++) if (!this.known[idx[i]!]) missing.push(i);
    if (missing.length > 0) {
      const input =
        missing.length === idx.length ? x.subarray(0, idx.length * f) : new Float32Array(missing.length * f);
      if (missing.length !== idx.length)
        for (const [j, i] of missing.entries()) input.set(x.subarray(i * f, (i + 1) * f), j * f);
      const out = await this.teacher.logits(input, missing.length);
      missing.forEach((i, j) => {
        this.logits.set(out.subarray(j * k, (j + 1) * k), idx[i]! * k);
        this.known[idx[i]!] = 1;
      });
    }
    const rows = new Float32Array(idx.length * k);
    for (let i = 0; i < idx.length; i++)
      rows.set(this.logits.subarray(idx[i]! * k, (idx[i]! + 1) * k), i * k);
    return rows;
  }
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Trains the student of `spec`: from labels alone (`kind: train`) or under its teacher
 * (`kind: distill`). Emits metrics, progress and checkpoints through `hooks`; returns the summary and
 * the trained student, or where it stopped when canceled.
 */
export async function train(spec: RunSpec, hooks: TrainerHooks, backend: BackendInfo): Promise<TrainOutcome> {
  const data = await loadDatasets(spec, hooks.source);
  hooks.log(
    `data: ${data.train.n} training and ${data.validation.n} validation examples of shape [${data.inputShape.join(', ')}]`,
  );

  let teacher: Teacher | undefined;
  let numClasses = data.numClasses;
  if (spec.kind === 'distill') {
    if (!spec.teacher) throw new RetortError('RETORT_SPEC_INVALID', 'a distill run needs a teacher');
    teacher = await loadTeacher(spec.teacher, data.inputShape, hooks.source, hooks.loadRunModel);
    if (teacher.numClasses < data.numClasses) {
      throw new RetortError(
        'RETORT_MODEL_INCOMPATIBLE',
        `the teacher has ${teacher.numClasses} outputs but the labels go up to ${data.numClasses - 1}`,
      );
    }
    numClasses = teacher.numClasses;
    hooks.log(`teacher: ${teacher.params} parameters on ${teacher.runtime}, ${numClasses} classes`);
  }
  const student = await loadStudent(spec, data.inputShape, numClasses, hooks.source);
  hooks.log(`student: ${student.countParams()} parameters; backend ${backend.name} (${backend.device})`);

  try {
    return await trainLoop(spec, hooks, backend, data, student, teacher, numClasses);
  } finally {
    student.dispose();
    teacher?.dispose();
  }
}

async function trainLoop(
  spec: RunSpec,
  hooks: TrainerHooks,
  backend: BackendInfo,
  data: Datasets,
  student: tf.LayersModel,
  teacher: Teacher | undefined,
  numClasses: number,
): Promise<TrainOutcome> {
  const { batchSize, epochs, seed } = spec.training;
  const n = data.train.n;
  const stepsPerEpoch = Math.ceil(n / batchSize);
  const totalSteps = Math.min(spec.training.maxSteps ?? Infinity, epochs * stepsPerEpoch);
  const optimizer = makeOptimizer(spec);
  const cache = teacher ? new TeacherCache(teacher, data.train) : undefined;
  const losses = spec.distillation.losses;
  const ckptEvery = spec.training.checkpointEvery;

  const x = new Float32Array(batchSize * data.train.features);
  const labels = new Int32Array(batchSize);
  // Per-step loss scalars stay on the device until a flush reads them back together.
  let pending: { step: number; values: tf.Scalar[] }[] = [];
  const termNames = ['loss', ...losses.map((l) => `loss_${l.type}`)];
  const flush = async () => {
    if (pending.length === 0) return;
    const batch = pending;
    pending = [];
    const stacked = tf.stack(batch.flatMap((p) => p.values));
    const values = (await stacked.data()) as Float32Array;
    stacked.dispose();
    for (const p of batch) for (const v of p.values) v.dispose();
    const points: MetricPoint[] = [];
    let j = 0;
    for (const p of batch)
      for (const name of termNames) points.push({ name, step: p.step, value: values[j++]! });
    if (points.some((p) => !Number.isFinite(p.value))) {
      throw new RetortError(
        'RETORT_TRAINING_DIVERGED',
        `the loss became ${points.find((p) => !Number.isFinite(p.value))?.value} at step ${points.find((p) => !Number.isFinite(p.value))?.step}; lower training.optimizer.learningRate`,
      );
    }
    hooks.onMetrics(points);
  };

  let step = 0;
  let trained = 0;
  let teacherValLogits: Float32Array | undefined;
  const t0 = performance.now();
  let epoch = 0;
  for (; epoch < epochs && step < totalSteps; epoch++) {
    const order = permutation(n, deriveSeed(seed, 'order', epoch));
    for (let b = 0; b < stepsPerEpoch && step < totalSteps; b++) {
      await yieldToEventLoop(); // lets a cancel message in
      if (hooks.shouldStop() === 'cancel') {
        await flush();
        return { status: 'canceled', position: { step, epoch, batchInEpoch: b } };
      }
      const idx = order.subarray(b * batchSize, Math.min(n, (b + 1) * batchSize));
      const m = idx.length;
      gatherScaled(data.train, idx, data.scale, x);
      for (let i = 0; i < m; i++) labels[i] = data.train.y[idx[i]!]!;
      const tRows = cache ? await cache.batch(idx, x) : undefined;
      seedDropout(student, seed, step);
      const values = tf.tidy(() => {
        const xb = tf.tensor(x.subarray(0, m * data.train.features), [m, ...data.inputShape]);
        const yb = tf.tensor1d(labels.subarray(0, m), 'int32');
        const tb = tRows ? tf.tensor2d(tRows, [m, numClasses]) : undefined;
        let kept: tf.Scalar[] = [];
        const total = optimizer.minimize(() => {
          const logits = student.apply(xb, { training: true }) as tf.Tensor2D;
          const terms = lossTerms(losses, { studentLogits: logits, labels: yb, teacherLogits: tb });
          kept = terms.map((t) => tf.keep(t.value));
          return tf.addN(terms.map((t) => tf.mul(t.value, t.weight))) as tf.Scalar;
        }, true) as tf.Scalar;
        return [total, ...kept];
      });
      step++;
      trained += m;
      pending.push({ step, values });
      if (pending.length >= METRIC_FLUSH_STEPS) await flush();
      hooks.onProgress({ step, epoch, batchInEpoch: b + 1, totalSteps, tensors: tf.memory().numTensors });
      if ('steps' in ckptEvery && step % ckptEvery.steps === 0 && step < totalSteps) {
        await hooks.onCheckpoint(
          await encodeCheckpoint(student, optimizer, { step, epoch, batchInEpoch: b + 1 }),
        );
      }
    }
    await flush();
    // Validation at the end of each epoch: loss and accuracy against the labels.
    const valLogits = await predictLogits(student, data.validation, data, numClasses);
    const points: MetricPoint[] = [
      { name: 'val_loss', step, value: meanCrossEntropy(valLogits, data.validation.y, numClasses) },
      { name: 'val_accuracy', step, value: accuracy(valLogits, data.validation.y, numClasses) },
    ];
    if (teacher) {
      teacherValLogits ??= await teacherLogits(teacher, data.validation, data);
      points.push({
        name: 'val_agreement',
        step,
        value: agreement(valLogits, teacherValLogits, data.validation.n, numClasses),
      });
    }
    hooks.onMetrics(points);
    const done = epoch + 1;
    if ('epochs' in ckptEvery && done % ckptEvery.epochs === 0 && step < totalSteps) {
      await hooks.onCheckpoint(
        await encodeCheckpoint(student, optimizer, { step, epoch: done, batchInEpoch: 0 }),
      );
    }
  }
  const trainSeconds = (performance.now() - t0) / 1000;
  optimizer.dispose();

  const summary = await summarize({
    student,
    teacher,
    data,
    numClasses,
    teacherValLogits,
    backend: backend.name,
    training: {
      steps: step,
      epochs: epoch,
      trainSeconds,
      samplesPerSecond: trained / trainSeconds,
      trainExamples: data.train.n,
    },
  });
  return { status: 'succeeded', summary, student: await saveModel(student) };
}
