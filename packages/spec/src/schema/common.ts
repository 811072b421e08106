import Type, { type TSchema } from 'typebox';

/**
 * Building blocks of the run-spec schema. Union sites carry an `x-retort-union` annotation naming
 * the key that tells their branches apart, so that validation reports the problems of the branch
 * the client meant, not of every branch.
 */

export interface UnionBranchHint {
  /** The property whose presence (and value, when given) selects this branch. */
  key: string;
  value?: string;
}

export function TaggedUnion<T extends TSchema[]>(
  branches: [...T],
  hints: UnionBranchHint[],
  description: string,
) {
  return Type.Union(branches, { 'x-retort-union': hints, description });
}

export const Uri = Type.String({
  minLength: 1,
  maxLength: 4096,
  pattern: '^(file|https?)://',
  description: 'A `file://` URI inside the allowed data roots, or an `http(s)://` URL.',
});

export const Closed = { additionalProperties: false } as const;

export const Weight = Type.Number({
  minimum: 0,
  maximum: 1000,
  description: 'Multiplier of this term in the total loss. Default 1.',
});
