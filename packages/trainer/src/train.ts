import { RetortError, type RunSpec, type RunSummary } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import type { BackendInfo } from './backend.js';
import {
  type CheckpointData,
  encodeCheckpoint,
  type Restored,
  restoreCheckpoint,
  type TrainingPosition,
} from './checkpoint.js';
import { type Datasets, gatherScaled, loadDatasets } from './data/dataset.js';
import { EarlyStopping } from './early-stopping.js';
import { summarize } from './evaluate.js';
import { accuracy, agreement, meanCrossEntropy } from './evaluation.js';
import { predictLogits, teacherLogits } from './inference.js';
import type { ByteSource } from './io.js';
import { LossLog, type MetricPoint } from './loss-log.js';
import { lossTerms } from './losses.js';
import { loadStudent, loadTeacher, type RunModelLoader } from './models/load.js';
import { seedDropout } from './models/presets.js';
import { type SavedModel, saveModel } from './models/saved-model.js';
import type { Teacher } from './models/teacher.js';
import { decayWeights, learningRateAt, makeOptimizer, setLearningRate } from './optim.js';
import { deriveSeed, permutation } from './random.js';
import { TeacherCache } from './teacher-cache.js';

export type { MetricPoint } from './loss-log.js';
export { TeacherCache } from './teacher-cache.js';

export interface Progress extends TrainingPosition {
  totalSteps: number;
  /** Live tensors, so callers (and tests) can see that memory stays flat. */
  tensors: number;
}

/** What the caller asks of a running training: stop now, or checkpoint and stop (pause, shutdown). */
export type StopRequest = 'cancel' | 'checkpoint' | null;

/** How the trainer talks to the world. The worker backs it with IPC to Postgres; the CLI with files. */
export interface TrainerHooks {
  source: ByteSource;
  loadRunModel: RunModelLoader;
  /** Points arrive in batches; the trainer never waits on where they go. Every point up to a
   * checkpoint's step is emitted before that checkpoint. */
  onMetrics(points: MetricPoint[]): void;
  onProgress(p: Progress): void;
  /** Training waits for the checkpoint to be stored before it goes on. */
  onCheckpoint(c: CheckpointData): Promise<void>;
  /** Polled before every step. */
  shouldStop(): StopRequest;
  log(message: string): void;
}

export interface TrainOptions {
  /** A checkpoint of this run to continue from, exactly where it was taken. */
  resume?: Uint8Array | undefined;
}

export type TrainOutcome =
  | { status: 'succeeded'; summary: RunSummary; student: SavedModel }
  | { status: 'canceled'; position: TrainingPosition }
  /** Checkpointed (the checkpoint has been handed to onCheckpoint) and stopped, to continue later. */
  | { status: 'stopped'; position: TrainingPosition };

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Trains the student of `spec`: from labels alone (`kind: train`) or under its teacher
 * (`kind: distill`), from the start or from a checkpoint. Emits metrics, progress and checkpoints
 * through `hooks`; returns the summary and the trained student, or where it stopped.
 */
export async function train(
  spec: RunSpec,
  hooks: TrainerHooks,
  backend: BackendInfo,
  options: TrainOptions = {},
): Promise<TrainOutcome> {
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
  const optimizer = makeOptimizer(spec);
  try {
    let restored: Restored | undefined;
    if (options.resume) {
      restored = await restoreCheckpoint(options.resume, student, optimizer);
      hooks.log(`resuming from the checkpoint at step ${restored.position.step}`);
    }
    return await new TrainingLoop(spec, hooks, backend, data, student, optimizer, teacher, numClasses).run(
      restored,
    );
  } finally {
    optimizer.dispose();
    student.dispose();
    teacher?.dispose();
  }
}

/** One run's training loop: steps, per-epoch validation, checkpoints, early stopping, stop requests. */
class TrainingLoop {
  private readonly stepsPerEpoch: number;
  private readonly totalSteps: number;
  private readonly cache: TeacherCache | undefined;
  private readonly losses: LossLog;
  private readonly early: EarlyStopping;
  private readonly x: Float32Array;
  private readonly labels: Int32Array;
  private teacherValLogits: Float32Array | undefined;

  constructor(
    private readonly spec: RunSpec,
    private readonly hooks: TrainerHooks,
    private readonly backend: BackendInfo,
    private readonly data: Datasets,
    private readonly student: tf.LayersModel,
    private readonly optimizer: tf.Optimizer,
    private readonly teacher: Teacher | undefined,
    private readonly numClasses: number,
  ) {
    const { batchSize, epochs, maxSteps } = spec.training;
    this.stepsPerEpoch = Math.ceil(data.train.n / batchSize);
    this.totalSteps = Math.min(maxSteps ?? Infinity, epochs * this.stepsPerEpoch);
    this.cache = teacher ? new TeacherCache(teacher, data.train) : undefined;
    const names = ['loss', ...spec.distillation.losses.map((l) => `loss_${l.type}`)];
    this.losses = new LossLog(names, (points) => hooks.onMetrics(points));
    this.early = new EarlyStopping(spec.training.earlyStopping, student);
    this.x = new Float32Array(batchSize * data.train.features);
    this.labels = new Int32Array(batchSize);
  }

  async run(restored: Restored | undefined): Promise<TrainOutcome> {
    try {
      if (restored) {
        this.early.resume(restored.state, restored.extras);
        for (const t of restored.extras.values()) t.dispose();
      }
      return await this.loop(restored?.position ?? { step: 0, epoch: 0, batchInEpoch: 0 });
    } finally {
      this.losses.dispose();
      this.early.dispose();
    }
  }

  private async checkpoint(position: TrainingPosition, valAccuracy?: number): Promise<void> {
    await this.losses.flush(); // every point up to this step goes out before the checkpoint
    const extras = this.early.checkpointExtras();
    await this.hooks.onCheckpoint(
      await encodeCheckpoint(this.student, this.optimizer, position, { ...extras, valAccuracy }),
    );
  }

  private async loop(start: TrainingPosition): Promise<TrainOutcome> {
    const { epochs, seed, batchSize } = this.spec.training;
    const every = this.spec.training.checkpointEvery;
    const n = this.data.train.n;
    let step = start.step;
    let trained = 0;
    let stoppedEarly = false;
    const t0 = performance.now();
    let epoch = start.epoch;
    for (; epoch < epochs && step < this.totalSteps && !stoppedEarly; epoch++) {
      const order = permutation(n, deriveSeed(seed, 'order', epoch));
      for (
        let b = epoch === start.epoch ? start.batchInEpoch : 0;
        b < this.stepsPerEpoch && step < this.totalSteps;
        b++
      ) {
        await yieldToEventLoop(); // lets a stop request in
        const stop = this.hooks.shouldStop();
        if (stop) {
          const position = { step, epoch, batchInEpoch: b };
          await this.losses.flush();
          if (stop === 'cancel') return { status: 'canceled', position };
          await this.checkpoint(position);
          return { status: 'stopped', position };
        }
        const idx = order.subarray(b * batchSize, Math.min(n, (b + 1) * batchSize));
        await this.step(idx, step);
        step++;
        trained += idx.length;
        this.hooks.onProgress({
          step,
          epoch,
          batchInEpoch: b + 1,
          totalSteps: this.totalSteps,
          tensors: tf.memory().numTensors,
        });
        if ('steps' in every && step % every.steps === 0 && step < this.totalSteps) {
          await this.checkpoint({ step, epoch, batchInEpoch: b + 1 });
        }
      }
      await this.losses.flush();
      const val = await this.validate(step);
      stoppedEarly = this.early.observe(epoch + 1, val);
      if (stoppedEarly)
        this.hooks.log(`early stopping after epoch ${epoch + 1}; the best was epoch ${this.early.bestEpoch}`);
      if ('epochs' in every && (epoch + 1) % every.epochs === 0 && step < this.totalSteps && !stoppedEarly) {
        await this.checkpoint({ step, epoch: epoch + 1, batchInEpoch: 0 }, val.accuracy);
      }
    }
    const trainSeconds = (performance.now() - t0) / 1000;
    // With early stopping, the best epoch's weights are the result.
    if (this.early.enabled) this.early.restoreBest();
    const summary = await summarize({
      student: this.student,
      teacher: this.teacher,
      data: this.data,
      numClasses: this.numClasses,
      teacherValLogits: this.teacherValLogits,
      backend: this.backend.name,
      training: {
        steps: step,
        epochs: epoch,
        trainSeconds,
        samplesPerSecond: trained / trainSeconds,
        trainExamples: n,
      },
    });
    if (this.early.enabled) Object.assign(summary, { bestEpoch: this.early.bestEpoch, stoppedEarly });
    return { status: 'succeeded', summary, student: await saveModel(this.student) };
  }

  /** One optimizer step on the examples at `idx`; `step` is the number of steps done before it. */
  private async step(idx: Int32Array, step: number): Promise<void> {
    const { data, student, numClasses, spec } = this;
    const m = idx.length;
    gatherScaled(data.train, idx, data.scale, this.x);
    for (let i = 0; i < m; i++) this.labels[i] = data.train.y[idx[i]!]!;
    const tRows = this.cache ? await this.cache.batch(idx, this.x) : undefined;
    seedDropout(student, spec.training.seed, step);
    const lr = learningRateAt(spec, step, this.totalSteps, this.stepsPerEpoch);
    setLearningRate(this.optimizer, lr);
    const progress = this.totalSteps > 1 ? step / (this.totalSteps - 1) : 1;
    const values = tf.tidy(() => {
      const xb = tf.tensor(this.x.subarray(0, m * data.train.features), [m, ...data.inputShape]);
      const yb = tf.tensor1d(this.labels.subarray(0, m), 'int32');
      const tb = tRows ? tf.tensor2d(tRows, [m, numClasses]) : undefined;
      let kept: tf.Scalar[] = [];
      const total = this.optimizer.minimize(() => {
        const logits = student.apply(xb, { training: true }) as tf.Tensor2D;
        const terms = lossTerms(spec.distillation.losses, {
          studentLogits: logits,
          labels: yb,
          teacherLogits: tb,
          progress,
        });
        kept = terms.map((t) => tf.keep(t.value));
        return tf.addN(terms.map((t) => tf.mul(t.value, t.weight))) as tf.Scalar;
      }, true) as tf.Scalar;
      return [total, ...kept];
    });
    const o = spec.training.optimizer;
    if (o.type === 'adamw') decayWeights(student, lr, o.weightDecay);
    await this.losses.push(step + 1, values);
  }

  /** Validation loss and accuracy (and agreement with the teacher). */
  private async validate(step: number): Promise<{ accuracy: number; loss: number }> {
    const { data, numClasses } = this;
    const valLogits = await predictLogits(this.student, data.validation, data, numClasses);
    const v = {
      accuracy: accuracy(valLogits, data.validation.y, numClasses),
      loss: meanCrossEntropy(valLogits, data.validation.y, numClasses),
    };
    const points: MetricPoint[] = [
      { name: 'val_loss', step, value: v.loss },
      { name: 'val_accuracy', step, value: v.accuracy },
    ];
    if (this.teacher) {
      this.teacherValLogits ??= await teacherLogits(this.teacher, data.validation, data);
      points.push({
        name: 'val_agreement',
        step,
        value: agreement(valLogits, this.teacherValLogits, data.validation.n, numClasses),
      });
    }
    this.hooks.onMetrics(points);
    return v;
  }
}
