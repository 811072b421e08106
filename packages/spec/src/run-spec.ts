import type { DatasetSpec, UnlabeledSpec } from './schema/index.js';
import type { AcceptSpec } from './verdict.js';

/**
 * A run spec after validation, with every default filled in. This is what is stored on the run,
 * returned by the API and handed to the trainer.
 */
export interface RunSpec {
  name: string;
  kind: RunKind;
  teacher?: TeacherSpec;
  /** Several teachers, each with its weight (instead of `teacher`). */
  teachers?: WeightedTeacherSpec[];
  student: StudentSpec;
  data: {
    train: DatasetSpec;
    validation: DatasetSpec | { split: number };
    unlabeled?: UnlabeledSpec;
    preprocess: { scale: number; shape?: number[]; mean?: number[]; std?: number[] };
    augment?: { shift: number; flip: boolean };
  };
  distillation: { losses: LossSpec[]; teacherCache: 'auto' | 'off' };
  training: {
    epochs: number;
    batchSize: number;
    maxSteps?: number;
    optimizer: OptimizerSpec;
    schedule: ScheduleSpec;
    warmupSteps: number;
    earlyStopping?: EarlyStoppingSpec;
    seed: number;
    checkpointEvery: { steps: number } | { epochs: number };
    maxAttempts: number;
  };
  resources: { pool: string; gpus: number };
  priority: number;
  tags: Record<string, string>;
  /** Acceptance thresholds on the summary; the run's verdict. */
  accept?: AcceptSpec;
}

export type RunKind = 'distill' | 'train';

export type TeacherSpec = { uri: string; format: TeacherFormat } | { run: string };
export type WeightedTeacherSpec = TeacherSpec & { weight: number };
export type TeacherFormat = 'onnx' | 'tfjs-layers' | 'tfjs-graph';

export type StudentSpec = MlpStudentSpec | CnnStudentSpec | CustomStudentSpec;
export interface MlpStudentSpec {
  preset: 'mlp';
  hidden: number[];
  activation: 'relu' | 'tanh' | 'gelu';
  dropout: number;
}
export interface CnnStudentSpec {
  preset: 'cnn';
  filters: number[];
  kernelSize: number;
  dense: number[];
  dropout: number;
}
export interface CustomStudentSpec {
  uri: string;
  format: 'tfjs-layers';
}

export type LossSpec =
  | KdLossSpec
  | CeLossSpec
  | DkdLossSpec
  | HintLossSpec
  | AttentionLossSpec
  | RkdLossSpec
  | JacobianLossSpec
  | PseudoLabelLossSpec;
export interface HintLossSpec {
  type: 'hint';
  weight: number;
  student: string;
  teacher: string;
}
export interface AttentionLossSpec {
  type: 'attention';
  weight: number;
  student: string;
  teacher: string;
  p: number;
}
export interface RkdLossSpec {
  type: 'rkd';
  weight: number;
  /** Layers whose outputs are the embeddings; absent means the logits. */
  student?: string;
  teacher?: string;
  distance: number;
  angle: number;
}
export interface JacobianLossSpec {
  type: 'jacobian';
  weight: number;
  temperature: number;
}
export interface PseudoLabelLossSpec {
  type: 'pseudo-label';
  weight: number;
  mode: 'hard' | 'soft';
  threshold: number;
  temperature: number;
}
/** A fixed temperature, or one annealed from `from` to `to` over the run. */
export type TemperatureSpec = number | { from: number; to: number; schedule: 'linear' | 'cosine' };
export interface KdLossSpec {
  type: 'kd';
  weight: number;
  temperature: TemperatureSpec;
}
export interface DkdLossSpec {
  type: 'dkd';
  weight: number;
  alpha: number;
  beta: number;
  temperature: number;
}
export interface CeLossSpec {
  type: 'ce';
  weight: number;
}

export type OptimizerSpec =
  | { type: 'adam'; learningRate: number }
  | { type: 'adamw'; learningRate: number; weightDecay: number }
  | { type: 'sgd'; learningRate: number; momentum: number; nesterov: boolean };

export type ScheduleSpec =
  | { type: 'constant' }
  | { type: 'step'; everyEpochs: number; gamma: number }
  | { type: 'cosine'; minLearningRate: number };

export interface EarlyStoppingSpec {
  metric: 'val_accuracy' | 'val_loss';
  patience: number;
  minDelta: number;
}

export const DEFAULTS = {
  mlpHidden: [128],
  cnnFilters: [32, 64],
  cnnKernelSize: 3,
  cnnDense: [128],
  scale: 1 / 255,
  validationSplit: 0.1,
  kdTemperature: 4,
  dkdAlpha: 1,
  dkdBeta: 8,
  adamwWeightDecay: 0.01,
  stepGamma: 0.1,
  patience: 3,
  distillLosses: [
    { type: 'kd', weight: 0.9, temperature: 4 },
    { type: 'ce', weight: 0.1 },
  ] as LossSpec[],
  trainLosses: [{ type: 'ce', weight: 1 }] as LossSpec[],
  epochs: 5,
  batchSize: 128,
  adamLearningRate: 0.001,
  sgdLearningRate: 0.01,
  seed: 42,
  maxAttempts: 3,
  pool: 'default',
  gpus: 1,
  priority: 50,
} as const;

/** The teachers of a spec, one or several, each with its weight. */
export function teachersOf(spec: RunSpec): WeightedTeacherSpec[] {
  if (spec.teachers) return spec.teachers;
  return spec.teacher ? [{ ...spec.teacher, weight: 1 }] : [];
}

export function isTeacherFromRun(t: TeacherSpec): t is { run: string } {
  return 'run' in t;
}

export function isPresetStudent(s: StudentSpec): s is MlpStudentSpec | CnnStudentSpec {
  return 'preset' in s;
}
