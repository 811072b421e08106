import Type from 'typebox';
import { Closed, TaggedUnion, Weight } from './common.js';

const Temperature = (description: string) => Type.Number({ exclusiveMinimum: 0, maximum: 100, description });

const TemperatureSchedule = Type.Object(
  {
    from: Temperature('Temperature at the first step.'),
    to: Temperature('Temperature at the last step.'),
    schedule: Type.Optional(
      Type.Enum(['linear', 'cosine'], { description: 'How it moves from `from` to `to`. Default linear.' }),
    ),
  },
  { ...Closed, title: 'TemperatureSchedule' },
);

const KdLoss = Type.Object(
  {
    type: Type.Literal('kd'),
    weight: Type.Optional(Weight),
    temperature: Type.Optional(
      Type.Union(
        [Temperature('Softmax temperature T; the term is scaled by T². Default 4.'), TemperatureSchedule],
        {
          description: 'A number, or `{ from, to, schedule }` to anneal it over the run.',
        },
      ),
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

const DkdLoss = Type.Object(
  {
    type: Type.Literal('dkd'),
    weight: Type.Optional(Weight),
    alpha: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 1000,
        description: 'Weight of the target-class part (TCKD). Default 1.',
      }),
    ),
    beta: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 1000,
        description: 'Weight of the non-target part (NCKD). Default 8.',
      }),
    ),
    temperature: Type.Optional(Temperature('Default 4; both parts are scaled by T².')),
  },
  {
    ...Closed,
    title: 'DkdLoss',
    description:
      'Decoupled KD (Zhao et al., 2022): the target-class and non-target-class parts of KD, weighted apart.',
  },
);

export const LossSchema = TaggedUnion(
  [KdLoss, CeLoss, DkdLoss],
  [
    { key: 'type', value: 'kd' },
    { key: 'type', value: 'ce' },
    { key: 'type', value: 'dkd' },
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
