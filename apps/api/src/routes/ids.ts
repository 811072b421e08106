import Type from 'typebox';

/** Ids in paths are UUIDs; anything else cannot name a record, and answers 404 without a query. */
export const isUuid = (s: string): boolean =>
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);

const INT8_MAX = 2n ** 63n - 1n;

/** A decimal string that fits Postgres's bigint (event, audit and delivery ids). */
export const isBigId = (s: string): boolean => /^[0-9]{1,19}$/.test(s) && BigInt(s) <= INT8_MAX;

/** The format name validation.ts registers for `isBigId`. */
export const BIG_ID_FORMAT = 'bigint-id';

/** A query or header holding a bigint id: 400 for anything that is not one (no 500 from Postgres). */
export const BigIdSchema = (description: string) =>
  Type.String({ format: BIG_ID_FORMAT, maxLength: 19, description: `${description} (up to 2^63 − 1)` });

/** Postgres `integer` columns (steps, epochs) hold up to this. */
export const INT4_MAX = 2_147_483_647;
