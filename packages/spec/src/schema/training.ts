import Type from 'typebox';
import { Closed, TaggedUnion } from './common.js';

const LearningRate = (d: string) => Type.Number({ exclusiveMinimum: 0, maximum: 10, description: d });

const Adam = Type.Object(
  { type: Type.Literal('adam'), learningRate: Type.Optional(LearningRate('Default 0.001.')) },
  { ...Closed, title: 'Adam' },
);

const AdamW = Type.Object(
  {
    type: Type.Literal('adamw'),
    learningRate: Type.Optional(LearningRate('Default 0.001.')),
    weightDecay: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 1,
        description:
          'Decoupled weight decay of kernels (not biases), per step × learning rate. Default 0.01.',
      }),
    ),
  },
  { ...Closed, title: 'AdamW' },
);

const Sgd = Type.Object(
  {
    type: Type.Literal('sgd'),
    learningRate: Type.Optional(LearningRate('Default 0.01.')),
    momentum: Type.Optional(
      Type.Number({ minimum: 0, exclusiveMaximum: 1, description: 'Default 0 (plain SGD).' }),
    ),
    nesterov: Type.Optional(
      Type.Boolean({ description: 'Nesterov momentum (needs momentum > 0). Default false.' }),
    ),
  },
  { ...Closed, title: 'Sgd' },
);

export const OptimizerSchema = TaggedUnion(
  [Adam, AdamW, Sgd],
  [
    { key: 'type', value: 'adam' },
    { key: 'type', value: 'adamw' },
    { key: 'type', value: 'sgd' },
  ],
  'Default `{ "type": "adam", "learningRate": 0.001 }`.',
);

const ConstantSchedule = Type.Object(
  { type: Type.Literal('constant') },
  { ...Closed, title: 'ConstantSchedule' },
);
const StepSchedule = Type.Object(
  {
    type: Type.Literal('step'),
    everyEpochs: Type.Integer({
      minimum: 1,
      description: 'Multiply the learning rate by `gamma` every this many epochs.',
    }),
    gamma: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'Default 0.1.' })),
  },
  { ...Closed, title: 'StepSchedule' },
);
const CosineSchedule = Type.Object(
  {
    type: Type.Literal('cosine'),
    minLearningRate: Type.Optional(
      Type.Number({ minimum: 0, maximum: 10, description: 'Where the cosine ends. Default 0.' }),
    ),
  },
  { ...Closed, title: 'CosineSchedule' },
);

export const ScheduleSchema = TaggedUnion(
  [ConstantSchedule, StepSchedule, CosineSchedule],
  [
    { key: 'type', value: 'constant' },
    { key: 'type', value: 'step' },
    { key: 'type', value: 'cosine' },
  ],
  'Learning-rate schedule over the run (after any warm-up). Default constant.',
);

export const EarlyStoppingSchema = Type.Object(
  {
    metric: Type.Optional(Type.Enum(['val_accuracy', 'val_loss'], { description: 'Default val_accuracy.' })),
    patience: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1000,
        description: 'Epochs without improvement before stopping. Default 3.',
      }),
    ),
    minDelta: Type.Optional(
      Type.Number({ minimum: 0, description: 'Smallest change that counts as improvement. Default 0.' }),
    ),
  },
  {
    ...Closed,
    description: 'Stop when the validation metric stops improving; the best epoch’s weights are the result.',
  },
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
    schedule: Type.Optional(ScheduleSchema),
    warmupSteps: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: 'Steps over which the learning rate rises linearly from 0. Default 0.',
      }),
    ),
    earlyStopping: Type.Optional(EarlyStoppingSchema),
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
