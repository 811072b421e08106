import Type from 'typebox';
import { Closed, TaggedUnion, Uri } from './common.js';

export const TeacherFormatSchema = Type.Enum(['onnx', 'tfjs-layers', 'tfjs-graph'], {
  description:
    'Model file format: `onnx`; `tfjs-layers` or `tfjs-graph` (the uri names model.json; weights files sit beside it).',
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

const TeacherWeight = Type.Number({
  exclusiveMinimum: 0,
  maximum: 1000,
  description: 'Share of this teacher in the combined soft targets. Default 1.',
});

export const TeachersSchema = Type.Array(
  TaggedUnion(
    [
      Type.Object(
        { uri: Uri, format: TeacherFormatSchema, weight: Type.Optional(TeacherWeight) },
        { ...Closed, title: 'WeightedTeacherFromUri' },
      ),
      Type.Object(
        {
          run: Type.String({ format: 'uuid', description: 'Id of an earlier succeeded run.' }),
          weight: Type.Optional(TeacherWeight),
        },
        { ...Closed, title: 'WeightedTeacherFromRun' },
      ),
    ],
    [{ key: 'uri' }, { key: 'run' }],
    'One teacher of several.',
  ),
  {
    minItems: 2,
    maxItems: 8,
    description:
      'Several teachers instead of one: their probabilities are averaged by weight into one soft target. Losses that read intermediate layers, or input gradients, use the first.',
  },
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
