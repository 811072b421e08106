import { createHash } from 'node:crypto';
import type { ByteSource } from '@retort/spec';
import { RetortError, type RunSpec, type RunSummary, teachersOf } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import type { BackendInfo } from './backend.js';
import {
  type CheckpointData,
  encodeCheckpoint,
  type Restored,
  restoreCheckpoint,
  type TrainingPosition,
} from './checkpoint.js';
import { augmentBatch } from './data/augment.js';
import {
  type Datasets,
  gatherScaled,
  type LabelledSet,
  loadDatasets,
  loadUnlabeled,
} from './data/dataset.js';
import { EarlyStopping } from './early-stopping.js';
import { summarize } from './evaluate.js';
import { accuracy, agreement, meanCrossEntropy } from './evaluation.js';
import { predictLogits, teacherLogits } from './inference.js';
import { LossLog, type MetricPoint } from './loss-log.js';
import { Adapter, featureNames, inputGradient, type LossContext, lossTerms } from './losses/index.js';
import { ensembleTeacher } from './models/ensemble.js';
import { loadStudent, loadTeacher, type RunModelLoader } from './models/load.js';
import { seedDropout } from './models/presets.js';
import { type SavedModel, saveModel } from './models/saved-model.js';
import type { Teacher } from './models/teacher.js';
import { layerOutputs } from './models/tfjs-teacher.js';
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
  /** Where teacher-output caches are kept between runs (the worker: artifacts in Postgres). */
  teacherCache?: {
    load(key: string): Promise<Uint8Array | null>;
    store(key: string, bytes: Uint8Array): Promise<void>;
  };
  /** The most memory a run's teacher-output cache may take (default 1 GiB); above it the teacher
   * runs on every batch. */
  teacherCacheMaxBytes?: number;
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

  const features = featureNames(spec.distillation.losses);
  let teacher: Teacher | undefined;
  let numClasses = data.numClasses;
  if (spec.kind === 'distill') {
    const specs = teachersOf(spec);
    if (specs.length === 0) throw new RetortError('RETORT_SPEC_INVALID', 'a distill run needs a teacher');
    const loaded: Teacher[] = [];
    try {
      for (const [i, t] of specs.entries()) {
        loaded.push(
          await loadTeacher(
            t,
            data.inputShape,
            hooks.source,
            hooks.loadRunModel,
            i === 0 ? features.teacher : [],
            { cuda: backend.device.includes('CUDA'), log: hooks.log },
          ),
        );
      }
    } catch (e) {
      for (const t of loaded) t.dispose();
      throw e;
    }
    teacher =
      loaded.length === 1
        ? loaded[0]!
        : ensembleTeacher(
            loaded,
            specs.map((t) => t.weight),
          );
    if (teacher.numClasses < data.numClasses) {
      teacher.dispose();
      throw new RetortError(
        'RETORT_MODEL_INCOMPATIBLE',
        `the teacher has ${teacher.numClasses} outputs but the labels go up to ${data.numClasses - 1}`,
      );
    }
    if (spec.distillation.losses.some((l) => l.type === 'jacobian') && !teacher.inputGradients) {
      teacher.dispose();
      throw new RetortError(
        'RETORT_MODEL_INCOMPATIBLE',
        "the jacobian loss needs the teacher's input gradients, which only a TensorFlow.js teacher (tfjs-layers, tfjs-graph, or a run) gives",
      );
    }
    numClasses = teacher.numClasses;
    hooks.log(`teacher: ${teacher.params} parameters on ${teacher.runtime}, ${numClasses} classes`);
  }
  const unlabeled = await loadUnlabeled(spec, hooks.source, data.train.features);
  const student = await loadStudent(spec, data.inputShape, numClasses, hooks.source);
  hooks.log(`student: ${student.countParams()} parameters; backend ${backend.name} (${backend.device})`);
  const optimizer = makeOptimizer(spec);
  try {
    let restored: Restored | undefined;
    if (options.resume) {
      restored = await restoreCheckpoint(options.resume, student, optimizer);
      hooks.log(`resuming from the checkpoint at step ${restored.position.step}`);
    }
    const cacheBase = teacher ? teacherCacheKey(spec, teacher, data) : undefined;
    const loop = await TrainingLoop.create({
      spec,
      hooks,
      backend,
      data,
      unlabeled,
      student,
      optimizer,
      teacher,
      numClasses,
      features,
      cacheBase,
    });
    return await loop.run(restored);
  } finally {
    optimizer.dispose();
    student.dispose();
    teacher?.dispose();
  }
}

/**
 * What the teacher's logits on the training set depend on: the teacher's bytes, the training
 * examples and labels as loaded (format, limit and split included) and their preprocessing.
 */
function teacherCacheKey(spec: RunSpec, teacher: Teacher, data: Datasets): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      v: 1,
      teacher: teacher.fingerprint,
      preprocess: spec.data.preprocess,
      k: teacher.numClasses,
    }),
  );
  const { x, y } = data.train;
  h.update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  h.update(new Uint8Array(y.buffer, y.byteOffset, y.byteLength));
  return h.digest('hex');
}

interface LoopArgs {
  spec: RunSpec;
  hooks: TrainerHooks;
  backend: BackendInfo;
  data: Datasets;
  unlabeled: LabelledSet | undefined;
  student: tf.LayersModel;
  optimizer: tf.Optimizer;
  teacher: Teacher | undefined;
  numClasses: number;
  /** Layers the losses read, of the student and of the (first) teacher. */
  features: { student: string[]; teacher: string[] };
  /** What the teacher's outputs on the training set depend on, short of which outputs are kept. */
  cacheBase: string | undefined;
}

/** The teacher-output cache of a run and the key it is stored under. */
interface CacheSetup {
  cache: TeacherCache | undefined;
  key: string | undefined;
}

/** One run's training loop: steps, per-epoch validation, checkpoints, early stopping, stop requests. */
class TrainingLoop {
  private readonly stepsPerEpoch: number;
  private readonly totalSteps: number;
  private readonly cache: TeacherCache | undefined;
  private readonly cacheKey: string | undefined;
  private readonly unlabeledCache: TeacherCache | undefined;
  private readonly losses: LossLog;
  private readonly early: EarlyStopping;
  private readonly x: Float32Array;
  private readonly xu: Float32Array;
  private readonly labels: Int32Array;
  private teacherValLogits: Float32Array | undefined;
  /** The training-set teacher cache: loaded, to be stored once complete, or neither. */
  private cacheState: 'hit' | 'stored' | 'computed' | 'off' | 'pending';

  private constructor(
    private readonly a: LoopArgs,
    /** The student with its read layers as extra outputs (the same weights). */
    private readonly tapped: tf.LayersModel,
    /** The hint losses' adapters, by loss index. */
    private readonly adapters: Map<number, Adapter>,
    setup: CacheSetup,
  ) {
    const { spec, data, teacher, hooks } = a;
    const { batchSize, epochs, maxSteps } = spec.training;
    this.stepsPerEpoch = Math.ceil(data.train.n / batchSize);
    this.totalSteps = Math.min(maxSteps ?? Infinity, epochs * this.stepsPerEpoch);
    this.cache = setup.cache;
    this.cacheKey = setup.key;
    this.unlabeledCache =
      teacher && a.unlabeled ? new TeacherCache(teacher, a.unlabeled, data.preprocess) : undefined;
    this.cacheState = !this.cache
      ? 'off'
      : spec.distillation.teacherCache === 'off' || !setup.key || !hooks.teacherCache
        ? 'computed'
        : 'pending';
    const names = ['loss', ...spec.distillation.losses.map((l) => `loss_${l.type}`)];
    this.losses = new LossLog(names, (points) => hooks.onMetrics(points));
    this.early = new EarlyStopping(spec.training.earlyStopping, a.student);
    this.x = new Float32Array(batchSize * data.train.features);
    this.xu = new Float32Array(a.unlabeled ? batchSize * data.train.features : 0);
    this.labels = new Int32Array(batchSize);
  }

  static async create(a: LoopArgs): Promise<TrainingLoop> {
    const { student, teacher, spec, data, features } = a;
    const tapped = features.student.length
      ? tf.model({
          inputs: student.inputs,
          outputs: [student.outputs[0]!, ...layerOutputs(student, features.student, 'student')],
        })
      : student;
    const adapters = new Map<number, Adapter>();
    // The teacher's feature shapes come from one example; the student's from its layers.
    const probe =
      teacher && features.teacher.length
        ? await teacher.forward(new Float32Array(data.train.features), 1)
        : undefined;
    for (const [i, l] of spec.distillation.losses.entries()) {
      if (l.type !== 'hint' || !probe) continue;
      const t = probe.features[features.teacher.indexOf(l.teacher)]!;
      const s = [1, ...(student.getLayer(l.student).outputShape as number[]).slice(1)];
      adapters.set(i, new Adapter(s, t.shape, spec.training.seed, i));
    }
    return new TrainingLoop(a, tapped, adapters, TrainingLoop.cacheSetup(a, probe?.features ?? []));
  }

  /**
   * With no augmentation, everything the teacher gives for a training example (logits, read
   * layers, input gradients) is computed once and kept, if it fits in the cache's memory limit.
   */
  private static cacheSetup(a: LoopArgs, probeFeatures: { shape: number[] }[]): CacheSetup {
    const { teacher, spec, data, hooks } = a;
    if (!teacher || spec.data.augment || !a.cacheBase) return { cache: undefined, key: undefined };
    const jac = spec.distillation.losses.find((l) => l.type === 'jacobian');
    const plan = {
      featureShapes: probeFeatures.map((f) => f.shape.slice(1)),
      gradientTemperature: jac && teacher.inputGradients ? jac.temperature : undefined,
    };
    const bytes = TeacherCache.bytes(teacher, data.train, plan);
    const limit = hooks.teacherCacheMaxBytes ?? 2 ** 30;
    if (bytes > limit) {
      hooks.log(
        `teacher outputs: ${(bytes / 2 ** 20).toFixed(0)} MiB for the training set, over the ${(limit / 2 ** 20).toFixed(0)} MiB cache limit; the teacher runs on every batch`,
      );
      return { cache: undefined, key: undefined };
    }
    const key = createHash('sha256')
      .update(a.cacheBase)
      .update(
        JSON.stringify({
          layers: a.features.teacher,
          parts: TeacherCache.describe(teacher, data.train, plan),
        }),
      )
      .digest('hex');
    return { cache: new TeacherCache(teacher, data.train, data.preprocess, plan), key };
  }

  private get variables(): tf.Variable[] {
    return [
      ...this.a.student.trainableWeights.map((w) => w.read() as tf.Variable),
      ...[...this.adapters.values()].flatMap((ad) => ad.variables),
    ];
  }

  async run(restored: Restored | undefined): Promise<TrainOutcome> {
    try {
      if (restored) {
        this.early.resume(restored.state, restored.extras);
        for (const [i, ad] of this.adapters) {
          for (const v of ad.variables) {
            const t = restored.extras.get(`adapter/${i}/${v.name.split('/').pop()}`);
            if (t) v.assign(t);
          }
        }
        for (const t of restored.extras.values()) t.dispose();
      }
      await this.loadTeacherCache();
      return await this.loop(restored?.position ?? { step: 0, epoch: 0, batchInEpoch: 0 });
    } finally {
      this.losses.dispose();
      this.early.dispose();
      for (const ad of this.adapters.values()) ad.dispose();
    }
  }

  /** A cache another run (or an earlier attempt) stored under this key saves a pass of the teacher. */
  private async loadTeacherCache(): Promise<void> {
    if (this.cacheState !== 'pending' || !this.cache) return;
    const bytes = await this.a.hooks.teacherCache!.load(this.cacheKey!);
    if (bytes && this.cache.load(bytes, this.cacheKey!)) {
      this.cacheState = 'hit';
      this.a.hooks.log(`teacher outputs: read from the cache ${this.cacheKey!.slice(0, 12)}`);
    }
  }

  /** Once every example's teacher logits are in, they are stored for later runs, once. */
  private async storeTeacherCache(): Promise<void> {
    if (this.cacheState !== 'pending' || !this.cache?.complete) return;
    await this.a.hooks.teacherCache!.store(this.cacheKey!, this.cache.serialize(this.cacheKey!));
    this.cacheState = 'stored';
  }

  private async checkpoint(position: TrainingPosition, valAccuracy?: number): Promise<void> {
    await this.losses.flush(); // every point up to this step goes out before the checkpoint
    const extras = this.early.checkpointExtras();
    for (const [i, ad] of this.adapters) {
      for (const v of ad.variables)
        extras.tensors.push({ name: `adapter/${i}/${v.name.split('/').pop()}`, tensor: v });
    }
    await this.a.hooks.onCheckpoint(
      await encodeCheckpoint(this.a.student, this.a.optimizer, position, { ...extras, valAccuracy }),
    );
  }

  private async loop(start: TrainingPosition): Promise<TrainOutcome> {
    const { spec, hooks, data } = this.a;
    const { epochs, seed, batchSize } = spec.training;
    const every = spec.training.checkpointEvery;
    const n = data.train.n;
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
        const stop = hooks.shouldStop();
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
        hooks.onProgress({
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
        hooks.log(`early stopping after epoch ${epoch + 1}; the best was epoch ${this.early.bestEpoch}`);
      if ('epochs' in every && (epoch + 1) % every.epochs === 0 && step < this.totalSteps && !stoppedEarly) {
        await this.checkpoint({ step, epoch: epoch + 1, batchInEpoch: 0 }, val.accuracy);
      }
    }
    const trainSeconds = (performance.now() - t0) / 1000;
    // With early stopping, the best epoch's weights are the result.
    if (this.early.enabled) this.early.restoreBest();
    const summary = await summarize({
      student: this.a.student,
      teacher: this.a.teacher,
      data,
      numClasses: this.a.numClasses,
      teacherValLogits: this.teacherValLogits,
      backend: this.a.backend.name,
      training: {
        steps: step,
        epochs: epoch,
        trainSeconds,
        samplesPerSecond: trained / trainSeconds,
        trainExamples: n,
      },
    });
    if (this.early.enabled) Object.assign(summary, { bestEpoch: this.early.bestEpoch, stoppedEarly });
    if (this.a.teacher) summary.teacherCache = this.cacheState === 'pending' ? 'computed' : this.cacheState;
    return { status: 'succeeded', summary, student: await saveModel(this.a.student) };
  }

  /** The unlabeled examples of step `step`: consecutive slices of a seeded order, renewed each pass. */
  private unlabeledBatch(step: number): Int32Array {
    const u = this.a.unlabeled!;
    const bs = Math.min(this.a.spec.training.batchSize, u.n);
    const perPass = Math.floor(u.n / bs);
    const pass = Math.floor(step / perPass);
    const order = permutation(u.n, deriveSeed(this.a.spec.training.seed, 'unlabeled', pass));
    const at = (step % perPass) * bs;
    return order.subarray(at, at + bs);
  }

  /** The teacher's side of a batch: logits, read layers, input gradients. */
  private async teacherSide(idx: Int32Array, m: number) {
    const { teacher, features, spec } = this.a;
    if (!teacher) return {};
    const f = this.a.data.train.features;
    let logits: Float32Array;
    let feats: { data: Float32Array; shape: number[] }[] = [];
    let grad: Float32Array | undefined;
    if (this.cache) {
      ({ logits, features: feats, grad } = await this.cache.outputs(idx));
      await this.storeTeacherCache();
    } else {
      ({ logits, features: feats } = await teacher.forward(this.x.subarray(0, m * f), m));
      const jac = spec.distillation.losses.find((l) => l.type === 'jacobian');
      if (jac && teacher.inputGradients)
        grad = await teacher.inputGradients(
          this.x.subarray(0, m * f),
          m,
          this.labels.subarray(0, m),
          jac.temperature,
        );
    }
    let unlabeled: { idx: Int32Array; logits: Float32Array } | undefined;
    if (this.unlabeledCache && this.a.unlabeled) {
      const uidx = this.unlabeledBatch(this.lastStep);
      gatherScaled(this.a.unlabeled, uidx, this.a.data.preprocess, this.xu);
      unlabeled = { idx: uidx, logits: await this.unlabeledCache.batch(uidx) };
    }
    return { logits, features: features.teacher.map((name, i) => ({ name, ...feats[i]! })), grad, unlabeled };
  }

  private lastStep = 0;

  /** One optimizer step on the examples at `idx`; `step` is the number of steps done before it. */
  private async step(idx: Int32Array, step: number): Promise<void> {
    const { data, student, numClasses, spec } = this.a;
    const m = idx.length;
    const f = data.train.features;
    gatherScaled(data.train, idx, data.preprocess, this.x);
    if (spec.data.augment)
      augmentBatch(this.x, m, data.inputShape, spec.data.augment, data.preprocess, spec.training.seed, step);
    for (let i = 0; i < m; i++) this.labels[i] = data.train.y[idx[i]!]!;
    this.lastStep = step;
    const t = await this.teacherSide(idx, m);
    seedDropout(student, spec.training.seed, step);
    const lr = learningRateAt(spec, step, this.totalSteps, this.stepsPerEpoch);
    setLearningRate(this.a.optimizer, lr);
    const progress = this.totalSteps > 1 ? step / (this.totalSteps - 1) : 1;
    const values = tf.tidy(() => {
      const xb = tf.tensor(this.x.subarray(0, m * f), [m, ...data.inputShape]);
      const yb = tf.tensor1d(this.labels.subarray(0, m), 'int32');
      const teacherFeatures = new Map((t.features ?? []).map((x) => [x.name, tf.tensor(x.data, x.shape)]));
      const u = t.unlabeled;
      const xu = u
        ? tf.tensor(this.xu.subarray(0, u.idx.length * f), [u.idx.length, ...data.inputShape])
        : undefined;
      let kept: tf.Scalar[] = [];
      const total = this.a.optimizer.minimize(
        () => {
          const out = this.tapped.apply(xb, { training: true });
          const [logits, ...feats] = (Array.isArray(out) ? out : [out]) as tf.Tensor[];
          const ctx: LossContext = {
            studentLogits: logits as tf.Tensor2D,
            labels: yb,
            teacherLogits: t.logits ? tf.tensor2d(t.logits, [m, numClasses]) : undefined,
            studentFeatures: new Map(this.a.features.student.map((name, i) => [name, feats[i]!])),
            teacherFeatures,
            adapters: this.adapters,
            studentInputGradient: (T) =>
              inputGradient(
                (xi) => student.apply(xi, { training: true }) as tf.Tensor,
                xb,
                tf.oneHot(yb, numClasses),
                T,
              ),
            teacherInputGradient: t.grad ? tf.tensor(t.grad, xb.shape) : undefined,
            unlabeled:
              u && xu
                ? {
                    studentLogits: student.apply(xu, { training: true }) as tf.Tensor2D,
                    teacherLogits: tf.tensor2d(u.logits, [u.idx.length, numClasses]),
                  }
                : undefined,
            progress,
          };
          const terms = lossTerms(spec.distillation.losses, ctx);
          kept = terms.map((term) => tf.keep(term.value));
          return tf.addN(terms.map((term) => tf.mul(term.value, term.weight))) as tf.Scalar;
        },
        true,
        this.variables,
      ) as tf.Scalar;
      return [total, ...kept];
    });
    const o = spec.training.optimizer;
    if (o.type === 'adamw') decayWeights(student, lr, o.weightDecay);
    await this.losses.push(step + 1, values);
  }

  /** Validation loss and accuracy (and agreement with the teacher). */
  private async validate(step: number): Promise<{ accuracy: number; loss: number }> {
    const { data, numClasses, teacher, student, hooks } = this.a;
    const valLogits = await predictLogits(student, data.validation, data, numClasses);
    const v = {
      accuracy: accuracy(valLogits, data.validation.y, numClasses),
      loss: meanCrossEntropy(valLogits, data.validation.y, numClasses),
    };
    const points: MetricPoint[] = [
      { name: 'val_loss', step, value: v.loss },
      { name: 'val_accuracy', step, value: v.accuracy },
    ];
    if (teacher) {
      this.teacherValLogits ??= await teacherLogits(teacher, data.validation, data);
      points.push({
        name: 'val_agreement',
        step,
        value: agreement(valLogits, this.teacherValLogits, data.validation.n, numClasses),
      });
    }
    hooks.onMetrics(points);
    return v;
  }
}
