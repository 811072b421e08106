import Type, { type Static } from 'typebox';
import { AcceptSchema } from '../verdict.js';
import { Closed } from './common.js';
import type { DatasetSchema, IdxDataset, UnlabeledSchema } from './data.js';
import { DataSchema } from './data.js';
import { DistillationSchema } from './losses.js';
import { StudentSchema, TeacherSchema, TeachersSchema } from './models.js';
import { ResourcesSchema, TrainingSchema } from './training.js';

export type { UnionBranchHint } from './common.js';
export * from './data.js';
export * from './losses.js';
export * from './models.js';
export * from './training.js';

/**
 * The run spec: the one definition of what a client may submit. The API validates with it, the
 * OpenAPI document is generated from it, and the worker, trainer and CLI import its types.
 */
export const RunSpecSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Default: the kind.' })),
    kind: Type.Optional(Type.Enum(['distill', 'train'], { description: 'Default distill.' })),
    teacher: Type.Optional(TeacherSchema),
    teachers: Type.Optional(TeachersSchema),
    student: StudentSchema,
    data: DataSchema,
    distillation: Type.Optional(DistillationSchema),
    training: Type.Optional(TrainingSchema),
    resources: Type.Optional(ResourcesSchema),
    priority: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 100, description: 'Higher runs first. Default 50.' }),
    ),
    accept: Type.Optional(AcceptSchema),
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
export type DatasetSpec = Static<typeof DatasetSchema>;
export type UnlabeledSpec = Static<typeof UnlabeledSchema>;
