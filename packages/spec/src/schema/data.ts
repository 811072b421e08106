import Type from 'typebox';
import { Closed, TaggedUnion, Uri } from './common.js';

export const Limit = Type.Integer({
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

export const UnlabeledSchema = Type.Object(
  {
    format: Type.Literal('idx'),
    images: Uri,
    limit: Type.Optional(Limit),
  },
  {
    ...Closed,
    title: 'UnlabeledIdx',
    description: 'Examples without labels, for pseudo-label losses: an IDX images file.',
  },
);

export const DataSchema = Type.Object(
  {
    train: IdxDataset,
    unlabeled: Type.Optional(UnlabeledSchema),
    validation: Type.Optional(ValidationSchema),
    preprocess: Type.Optional(PreprocessSchema),
  },
  Closed,
);
