import Type, { type Static, type TSchema } from 'typebox';

/**
 * The run spec: the one definition of what a client may submit. The API validates with it, the
 * OpenAPI document is generated from it, and the worker, trainer and CLI import its types.
 *
 * Union sites carry an `x-retort-union` annotation naming the key that tells their branches apart,
 * so that validation reports the problems of the branch the client meant, not of every branch.
 */

export interface UnionBranchHint {
  /** The property whose presence (and value, when given) selects this branch. */
  key: string;
  value?: string;
}

function TaggedUnion<T extends TSchema[]>(branches: [...T], hints: UnionBranchHint[], description: string) {
  return Type.Union(branches, { 'x-retort-union': hints, description });
}

const Uri = Type.String({
  minLength: 1,
  maxLength: 4096,
  pattern: '^(file|https?)://',
  description: 'A `file://` URI inside the allowed data roots, or an `http(s)://` URL.',
});

const Closed = { additionalProperties: false } as const;

// ---------------------------------------------------------------- models

export const TeacherFormatSchema = Type.Enum(['onnx', 'tfjs-layers'], {
  description: 'Model file format. `tfjs-graph` arrives with a later release.',
});

const TeacherFromUri = Type.Object(
  {
    uri: Uri,
    format: TeacherFormatSchema,
  },
  { ...Closed, title: 'TeacherFromUri' },
);

const TeacherFromRun = Type.Object(
  {
    run: Type.String({
      format: 'uuid',
      description: 'Id of an earlier succeeded run; its student is the teacher.',
    }),
  },
  { ...Closed, title: 'TeacherFromRun' },
);

export const TeacherSchema = TaggedUnion(
  [TeacherFromUri, TeacherFromRun],
  [{ key: 'uri' }, { key: 'run' }],
  'The trained model whose outputs the student learns from.',
);

const LayerSizes = (description: string) =>
  Type.Array(Type.Integer({ minimum: 1, maximum: 8192 }), { minItems: 0, maxItems: 16, description });

const Dropout = Type.Number({
  minimum: 0,
  maximum: 0.9,
  default: 0,
  description: 'Dropout rate after each hidden dense layer. Default 0.',
});

const MlpPreset = Type.Object(
  {
    preset: Type.Literal('mlp'),
    hidden: Type.Optional(LayerSizes('Hidden layer widths. Default [128].')),
    activation: Type.Optional(Type.Enum(['relu', 'tanh', 'gelu'], { description: 'Default relu.' })),
    dropout: Type.Optional(Dropout),
  },
  { ...Closed, title: 'MlpStudent' },
);

const CnnPreset = Type.Object(
  {
    preset: Type.Literal('cnn'),
    filters: Type.Optional(
      Type.Array(Type.Integer({ minimum: 1, maximum: 1024 }), {
        minItems: 1,
        maxItems: 6,
        description: 'Filters of each conv block (conv, relu, 2x2 max-pool). Default [32, 64].',
      }),
    ),
    kernelSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 7, description: 'Default 3.' })),
    dense: Type.Optional(LayerSizes('Dense layers after the conv blocks. Default [128].')),
    dropout: Type.Optional(Dropout),
  },
  { ...Closed, title: 'CnnStudent' },
);

const CustomStudent = Type.Object(
  {
    uri: Uri,
    format: Type.Literal('tfjs-layers'),
  },
  { ...Closed, title: 'CustomStudent' },
);

export const StudentSchema = TaggedUnion(
  [MlpPreset, CnnPreset, CustomStudent],
  [{ key: 'preset', value: 'mlp' }, { key: 'preset', value: 'cnn' }, { key: 'uri' }],
  'The model being trained: a preset, or a tfjs-layers topology (its weights, if any, are the starting point).',
);

// ---------------------------------------------------------------- data

const Limit = Type.Integer({
  minimum: 1,
  maximum: 10_000_000,
  description: 'Use only the first N examples.',
});

export const IdxDataset = Type.Object(
  {
    format: Type.Literal('idx'),
    images: Uri,
    labels: Uri,
    limit: Type.Optional(Limit),
  },
  { ...Closed, title: 'IdxDataset', description: 'MNIST-family IDX files, raw or gzip.' },
);

const ValidationSplit = Type.Object(
  {
    split: Type.Number({
      exclusiveMinimum: 0,
      exclusiveMaximum: 1,
      description: 'Fraction of the training set held out.',
    }),
  },
  { ...Closed, title: 'ValidationSplit' },
);

export const ValidationSchema = TaggedUnion(
  [IdxDataset, ValidationSplit],
  [{ key: 'format' }, { key: 'split' }],
  'A separate labelled set, or a split of the training set. Default `{ "split": 0.1 }`.',
);

export const PreprocessSchema = Type.Object(
  {
    scale: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, description: 'Multiplies every input value. Default 1/255.' }),
    ),
    shape: Type.Optional(
      Type.Array(Type.Integer({ minimum: 1, maximum: 4096 }), {
        minItems: 1,
        maxItems: 3,
        description: 'Shape of one example, e.g. [28, 28, 1]. Default: taken from the data.',
      }),
    ),
  },
  Closed,
);

export const DataSchema = Type.Object(
  {
    train: IdxDataset,
    validation: Type.Optional(ValidationSchema),
    preprocess: Type.Optional(PreprocessSchema),
  },
  Closed,
);

// ---------------------------------------------------------------- losses

const Weight = Type.Number({
  minimum: 0,
  maximum: 1000,
  description: 'Multiplier of this term in the total loss. Default 1.',
});

const KdLoss = Type.Object(
  {
    type: Type.Literal('kd'),
    weight: Type.Optional(Weight),
    temperature: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 100,
        description: 'Softmax temperature T; the term is scaled by T². Default 4.',
      }),
    ),
  },
  { ...Closed, title: 'KdLoss', description: 'Hinton KD: KL(teacher_T || student_T) · T².' },
);

const CeLoss = Type.Object(
  {
    type: Type.Literal('ce'),
    weight: Type.Optional(Weight),
  },
  { ...Closed, title: 'CeLoss', description: 'Cross-entropy with the hard labels.' },
);

export const LossSchema = TaggedUnion(
  [KdLoss, CeLoss],
  [
    { key: 'type', value: 'kd' },
    { key: 'type', value: 'ce' },
  ],
  'One term of the training loss.',
);

export const DistillationSchema = Type.Object(
  {
    losses: Type.Array(LossSchema, {
      minItems: 1,
      maxItems: 16,
      description: 'Default: kd (weight 0.9, T 4) and ce (weight 0.1) for distill; ce for train.',
    }),
  },
  Closed,
);

// ---------------------------------------------------------------- training

const Adam = Type.Object(
  {
    type: Type.Literal('adam'),
    learningRate: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 10, description: 'Default 0.001.' }),
    ),
  },
  { ...Closed, title: 'Adam' },
);

const Sgd = Type.Object(
  {
    type: Type.Literal('sgd'),
    learningRate: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 10, description: 'Default 0.01.' }),
    ),
    momentum: Type.Optional(
      Type.Number({ minimum: 0, exclusiveMaximum: 1, description: 'Default 0 (plain SGD).' }),
    ),
  },
  { ...Closed, title: 'Sgd' },
);

export const OptimizerSchema = TaggedUnion(
  [Adam, Sgd],
  [
    { key: 'type', value: 'adam' },
    { key: 'type', value: 'sgd' },
  ],
  'Default `{ "type": "adam", "learningRate": 0.001 }`.',
);

const EverySteps = Type.Object({ steps: Type.Integer({ minimum: 1 }) }, { ...Closed, title: 'EverySteps' });
const EveryEpochs = Type.Object(
  { epochs: Type.Integer({ minimum: 1 }) },
  { ...Closed, title: 'EveryEpochs' },
);

export const TrainingSchema = Type.Object(
  {
    epochs: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Default 5.' })),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 8192, description: 'Default 128.' })),
    maxSteps: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Stop after this many steps in all, even mid-epoch.' }),
    ),
    optimizer: Type.Optional(OptimizerSchema),
    seed: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 2 ** 31 - 1,
        description: 'Seeds init, data order and dropout. Default 42.',
      }),
    ),
    checkpointEvery: Type.Optional(
      TaggedUnion([EverySteps, EveryEpochs], [{ key: 'steps' }, { key: 'epochs' }], 'Default: every epoch.'),
    ),
    maxAttempts: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 20, description: 'Attempts when a worker is lost. Default 3.' }),
    ),
  },
  Closed,
);

export const ResourcesSchema = Type.Object(
  {
    pool: Type.Optional(
      Type.String({
        pattern: '^[a-z0-9][a-z0-9-]{0,62}$',
        description: 'Worker pool (queue) to run on. Default "default".',
      }),
    ),
    gpus: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 1,
        description: 'GPUs per run (one worker drives one). Default 1.',
      }),
    ),
  },
  Closed,
);

export const RunSpecSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Default: the kind.' })),
    kind: Type.Optional(Type.Enum(['distill', 'train'], { description: 'Default distill.' })),
    teacher: Type.Optional(TeacherSchema),
    student: StudentSchema,
    data: DataSchema,
    distillation: Type.Optional(DistillationSchema),
    training: Type.Optional(TrainingSchema),
    resources: Type.Optional(ResourcesSchema),
    priority: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 100, description: 'Higher runs first. Default 50.' }),
    ),
    tags: Type.Optional(
      Type.Record(Type.String(), Type.String({ maxLength: 256 }), {
        maxProperties: 32,
        propertyNames: { minLength: 1, maxLength: 64, pattern: '^[^:]+$' },
        description: 'Free key/value labels, filterable with `?tag=key:value`.',
      }),
    ),
  },
  { ...Closed, $id: 'RunSpec', title: 'RunSpec' },
);

/** What a client may send. */
export type RunSpecInput = Static<typeof RunSpecSchema>;
export type TeacherInput = Static<typeof TeacherSchema>;
export type StudentInput = Static<typeof StudentSchema>;
export type IdxDatasetSpec = Static<typeof IdxDataset>;
