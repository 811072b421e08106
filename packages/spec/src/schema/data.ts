import Type from 'typebox';
import { Closed, TaggedUnion, Uri } from './common.js';

export const Limit = Type.Integer({
  minimum: 1,
  maximum: 10_000_000,
  description: 'Use only the first N examples (after `offset`).',
});

const Offset = Type.Integer({
  minimum: 0,
  maximum: 10_000_000,
  description: 'Skip the first N examples. Default 0.',
});

const Field = (description: string) => Type.String({ minLength: 1, maxLength: 200, description });

export const IdxDataset = Type.Object(
  {
    format: Type.Literal('idx'),
    images: Uri,
    labels: Uri,
    offset: Type.Optional(Offset),
    limit: Type.Optional(Limit),
  },
  { ...Closed, title: 'IdxDataset', description: 'MNIST-family IDX files, raw or gzip.' },
);

export const CsvDataset = Type.Object(
  {
    format: Type.Literal('csv'),
    uri: Uri,
    label: Type.Optional(
      Field(
        'The column holding the class index. Default "label"; every other column is a feature, in order.',
      ),
    ),
    limit: Type.Optional(Limit),
  },
  { ...Closed, title: 'CsvDataset', description: 'A CSV file with a header row; numbers only.' },
);

export const NpyDataset = Type.Object(
  { format: Type.Literal('npy'), features: Uri, labels: Uri, limit: Type.Optional(Limit) },
  {
    ...Closed,
    title: 'NpyDataset',
    description: 'NumPy .npy arrays: features [N, …] and integer labels [N].',
  },
);

export const JsonlDataset = Type.Object(
  {
    format: Type.Literal('jsonl'),
    uri: Uri,
    features: Type.Optional(
      Field(
        'The field holding the example as an array of numbers (nested arrays are flattened). Default "features".',
      ),
    ),
    label: Type.Optional(Field('The field holding the class index. Default "label".')),
    limit: Type.Optional(Limit),
  },
  { ...Closed, title: 'JsonlDataset', description: 'One JSON object per line.' },
);

const formats = [
  { key: 'format', value: 'idx' },
  { key: 'format', value: 'csv' },
  { key: 'format', value: 'npy' },
  { key: 'format', value: 'jsonl' },
];

export const DatasetSchema = TaggedUnion(
  [IdxDataset, CsvDataset, NpyDataset, JsonlDataset],
  formats,
  'A labelled set: IDX, CSV, NPY or JSONL.',
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
  [IdxDataset, CsvDataset, NpyDataset, JsonlDataset, ValidationSplit],
  [...formats, { key: 'split' }],
  'A separate labelled set, or a split of the training set. Default `{ "split": 0.1 }`.',
);

export const UnlabeledSchema = TaggedUnion(
  [
    Type.Object(
      {
        format: Type.Literal('idx'),
        images: Uri,
        offset: Type.Optional(Offset),
        limit: Type.Optional(Limit),
      },
      { ...Closed, title: 'UnlabeledIdx' },
    ),
    Type.Object(
      { format: Type.Literal('csv'), uri: Uri, limit: Type.Optional(Limit) },
      { ...Closed, title: 'UnlabeledCsv' },
    ),
    Type.Object(
      { format: Type.Literal('npy'), features: Uri, limit: Type.Optional(Limit) },
      { ...Closed, title: 'UnlabeledNpy' },
    ),
    Type.Object(
      {
        format: Type.Literal('jsonl'),
        uri: Uri,
        features: Type.Optional(Field('Default "features".')),
        limit: Type.Optional(Limit),
      },
      { ...Closed, title: 'UnlabeledJsonl' },
    ),
  ],
  formats,
  'Examples without labels, for pseudo-label losses.',
);

export const PreprocessSchema = Type.Object(
  {
    scale: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, description: 'Multiplies every input value first. Default 1/255.' }),
    ),
    mean: Type.Optional(
      Type.Array(Type.Number(), {
        minItems: 1,
        maxItems: 64,
        description: 'Per-channel mean subtracted after scaling (one value, or one per channel).',
      }),
    ),
    std: Type.Optional(
      Type.Array(Type.Number({ exclusiveMinimum: 0 }), {
        minItems: 1,
        maxItems: 64,
        description: 'Per-channel standard deviation divided by after the mean.',
      }),
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

export const AugmentSchema = Type.Object(
  {
    shift: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 16,
        description: 'Shift each training image by up to this many pixels each way (zero fill). Default 0.',
      }),
    ),
    flip: Type.Optional(
      Type.Boolean({ description: 'Flip each training image left–right with probability ½. Default false.' }),
    ),
  },
  {
    ...Closed,
    description:
      'Random augmentation of training images, drawn from the run seed and the step. It turns off the teacher-output cache.',
  },
);

export const DataSchema = Type.Object(
  {
    train: DatasetSchema,
    unlabeled: Type.Optional(UnlabeledSchema),
    validation: Type.Optional(ValidationSchema),
    preprocess: Type.Optional(PreprocessSchema),
    augment: Type.Optional(AugmentSchema),
  },
  Closed,
);
