import Type, { type Static } from 'typebox';
import { VerdictSchema } from './verdict.js';

/** Schemas of what the API returns. The API serializes with them; clients import the types. */

export const RunStatuses = ['queued', 'running', 'paused', 'succeeded', 'failed', 'canceled'] as const;
export type RunStatus = (typeof RunStatuses)[number];
export const TerminalStatuses: readonly RunStatus[] = ['succeeded', 'failed', 'canceled'];

export const ModelSummarySchema = Type.Object({
  accuracy: Type.Number({ description: 'Top-1 accuracy on the validation set.' }),
  top5Accuracy: Type.Number({
    description: 'Share of validation examples whose label is among the 5 highest scores.',
  }),
  perClass: Type.Array(
    Type.Object({ class: Type.Integer(), examples: Type.Integer(), accuracy: Type.Number() }),
    {
      description: 'Accuracy on the validation examples of each class.',
    },
  ),
  params: Type.Integer(),
  latencyMs: Type.Number({
    description:
      'Inference time per example in milliseconds: the median time of a batch of 256 validation examples, divided by 256.',
  }),
  ece: Type.Number({ description: 'Expected calibration error (15 bins).' }),
  runtime: Type.String({
    description: 'What ran the model for the latency figure, e.g. tfjs-wasm or onnxruntime-cpu.',
  }),
});

export const RunSummarySchema = Type.Object({
  student: ModelSummarySchema,
  teacher: Type.Optional(ModelSummarySchema),
  agreement: Type.Optional(
    Type.Number({
      description: 'Share of validation examples where student and teacher pick the same class.',
    }),
  ),
  klTeacherStudent: Type.Optional(
    Type.Number({ description: 'Mean KL(teacher || student) at T = 1, in nats.' }),
  ),
  accuracyRetention: Type.Optional(Type.Number({ description: 'Student accuracy / teacher accuracy.' })),
  compression: Type.Optional(Type.Number({ description: 'Teacher params / student params.' })),
  speedup: Type.Optional(Type.Number({ description: 'Teacher latency / student latency.' })),
  validationExamples: Type.Integer(),
  trainExamples: Type.Integer(),
  steps: Type.Integer(),
  epochs: Type.Integer(),
  trainSeconds: Type.Number({
    description: 'Wall time of the training loop (excluding data and model loading).',
  }),
  samplesPerSecond: Type.Number({ description: 'Training examples processed per second of trainSeconds.' }),
  backend: Type.String(),
  bestEpoch: Type.Optional(
    Type.Integer({ description: 'With early stopping: the epoch whose weights are the result.' }),
  ),
  stoppedEarly: Type.Optional(
    Type.Boolean({ description: 'With early stopping: whether it stopped before training.epochs.' }),
  ),
  teacherCache: Type.Optional(
    Type.Enum(['hit', 'stored', 'computed', 'off'], {
      description:
        'hit: the teacher’s logits came from a stored cache; stored: computed and stored for later runs; computed: computed, not stored; off: no cache (disabled, augmentation, or layer losses).',
    }),
  ),
});
export type ModelSummary = Static<typeof ModelSummarySchema>;
export type RunSummary = Static<typeof RunSummarySchema>;

export const ErrorBodySchema = Type.Object(
  {
    code: Type.String({ description: 'Stable error code, e.g. RETORT_SPEC_INVALID.' }),
    message: Type.String(),
    details: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
  },
  { $id: 'Error', title: 'Error' },
);

export const RunSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    kind: Type.Enum(['distill', 'train']),
    status: Type.Enum([...RunStatuses]),
    spec: Type.Unknown({ description: 'The spec as submitted, with defaults filled in.' }),
    priority: Type.Integer(),
    pool: Type.String(),
    tags: Type.Record(Type.String(), Type.String()),
    attempt: Type.Integer(),
    progress: Type.Object({
      epoch: Type.Integer(),
      step: Type.Integer(),
      totalSteps: Type.Union([Type.Integer(), Type.Null()]),
    }),
    summary: Type.Union([RunSummarySchema, Type.Null()]),
    error: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()]),
    backend: Type.Union([Type.String(), Type.Null()], {
      description: 'Compute backend of the worker that ran it.',
    }),
    device: Type.Union([Type.String(), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
    startedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    verdict: VerdictSchema,
  },
  { $id: 'Run', title: 'Run' },
);
export type RunResource = Static<typeof RunSchema>;

export const ArtifactKinds = ['student-model', 'checkpoint', 'report', 'teacher-cache'] as const;
export type ArtifactKind = (typeof ArtifactKinds)[number];

export const ArtifactSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    kind: Type.Enum([...ArtifactKinds]),
    name: Type.String(),
    sizeBytes: Type.Integer(),
    sha256: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Artifact', title: 'Artifact' },
);
export type ArtifactResource = Static<typeof ArtifactSchema>;

export const MetricSeriesSchema = Type.Object({
  series: Type.Array(
    Type.Object({
      name: Type.String(),
      points: Type.Array(Type.Tuple([Type.Number(), Type.Number()]), {
        description: '[step, value] pairs, by step.',
      }),
      nextFromStep: Type.Optional(
        Type.Integer({
          description:
            'Present when the series has more points than `limit` (without `maxPoints`): ask again with `fromStep` set to this for the rest.',
        }),
      ),
    }),
  ),
});
export type MetricSeries = Static<typeof MetricSeriesSchema>;
