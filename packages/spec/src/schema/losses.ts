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

const LayerName = (who: string) =>
  Type.String({
    minLength: 1,
    maxLength: 200,
    description: `A layer of the ${who} (TensorFlow.js layer name, or ONNX node or value name).`,
  });

const HintLoss = Type.Object(
  {
    type: Type.Literal('hint'),
    weight: Type.Optional(Weight),
    student: LayerName('student'),
    teacher: LayerName('teacher'),
  },
  {
    ...Closed,
    title: 'HintLoss',
    description:
      'FitNets: the student layer, mapped by a learned linear adapter (a 1×1 convolution for feature maps), regressed onto the teacher layer (mean squared error).',
  },
);

const AttentionLoss = Type.Object(
  {
    type: Type.Literal('attention'),
    weight: Type.Optional(Weight),
    student: LayerName('student'),
    teacher: LayerName('teacher'),
    p: Type.Optional(
      Type.Number({
        minimum: 1,
        maximum: 8,
        description: 'Exponent of the attention map Σ_c |A|^p. Default 2.',
      }),
    ),
  },
  {
    ...Closed,
    title: 'AttentionLoss',
    description:
      'Attention transfer (Zagoruyko & Komodakis): squared distance between the normalised spatial attention maps of two conv feature maps.',
  },
);

const RkdLoss = Type.Object(
  {
    type: Type.Literal('rkd'),
    weight: Type.Optional(Weight),
    student: Type.Optional(LayerName('student')),
    teacher: Type.Optional(LayerName('teacher')),
    distance: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1000, description: 'Weight of the distance term. Default 1.' }),
    ),
    angle: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1000, description: 'Weight of the angle term. Default 2.' }),
    ),
  },
  {
    ...Closed,
    title: 'RkdLoss',
    description:
      'Relational KD (Park et al.): the pairwise distances and triplet angles of the batch’s embeddings (default: the logits), matched with smooth L1.',
  },
);

const JacobianLoss = Type.Object(
  {
    type: Type.Literal('jacobian'),
    weight: Type.Optional(Weight),
    temperature: Type.Optional(
      Temperature(
        'Softening of the outputs whose input gradients are matched. Default 4: at T = 1 the gradient of a confidently right example all but vanishes, and normalising it makes training unstable.',
      ),
    ),
  },
  {
    ...Closed,
    title: 'JacobianLoss',
    description:
      'Gradient matching: the input gradient of log softmax(z / T) at the label, normalised per example, pulled towards the teacher’s (squared distance). Needs a TensorFlow.js teacher.',
  },
);

const PseudoLabelLoss = Type.Object(
  {
    type: Type.Literal('pseudo-label'),
    weight: Type.Optional(Weight),
    mode: Type.Optional(
      Type.Enum(['hard', 'soft'], {
        description: 'Train on the teacher’s top class (hard) or its distribution (soft). Default hard.',
      }),
    ),
    threshold: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 1,
        description:
          'Hard mode: only examples the teacher gives at least this probability count. Default 0.9.',
      }),
    ),
    temperature: Type.Optional(
      Temperature('Soft mode: temperature of the distributions (scaled by T²). Default 1.'),
    ),
  },
  {
    ...Closed,
    title: 'PseudoLabelLoss',
    description:
      'Sample distillation: the teacher labels `data.unlabeled`, and each step the student also trains on a batch of it.',
  },
);

export const LossSchema = TaggedUnion(
  [KdLoss, CeLoss, DkdLoss, HintLoss, AttentionLoss, RkdLoss, JacobianLoss, PseudoLabelLoss],
  ['kd', 'ce', 'dkd', 'hint', 'attention', 'rkd', 'jacobian', 'pseudo-label'].map((value) => ({
    key: 'type',
    value,
  })),
  'One term of the training loss.',
);

export const DistillationSchema = Type.Object(
  {
    teacherCache: Type.Optional(
      Type.Enum(['auto', 'off'], {
        description:
          'auto: the teacher’s logits on the training set are computed once, stored as a `teacher-cache` artifact keyed by teacher, data and preprocessing, and reused by later epochs and later runs with the same key (not with augmentation, or with losses that read teacher layers). Default auto.',
      }),
    ),
    losses: Type.Array(LossSchema, {
      minItems: 1,
      maxItems: 16,
      description: 'Default: kd (weight 0.9, T 4) and ce (weight 0.1) for distill; ce for train.',
    }),
  },
  Closed,
);
