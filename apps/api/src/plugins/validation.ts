import { RetortError, RunSpecSchema, validateSpec } from '@retort/spec';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import { BIG_ID_FORMAT, isBigId } from '../routes/ids.js';

type AddFormats = typeof addFormatsModule.default;
const addFormats: AddFormats =
  (addFormatsModule as unknown as { default?: AddFormats }).default ??
  (addFormatsModule as unknown as AddFormats);

/**
 * Request validation: the run spec goes through packages/spec (every problem at once, cross-field
 * rules, defaults); everything else (query strings, headers, params) through one Ajv that reports
 * all errors, coerces query types and fills defaults.
 */
export function registerValidation(app: FastifyInstance): void {
  // Postgres text and jsonb cannot hold U+0000: refused here with its place, not as a 500 later.
  app.addHook('preValidation', async (request) => {
    const found = [
      nulAt(request.params, '/params'),
      nulAt(request.query, '/querystring'),
      nulAt(request.body, '/body'),
    ].find((p) => p !== null);
    if (found)
      throw new RetortError('RETORT_REQUEST_INVALID', 'The request holds a NUL character.', [
        { path: found, message: 'contains U+0000, which Retort does not store' },
      ]);
  });
  const ajv = new Ajv({
    allErrors: true,
    coerceTypes: 'array',
    useDefaults: true,
    // Unknown fields are errors, as in the run spec: nothing a client sends is silently dropped.
    removeAdditional: false,
    strict: false,
  });
  addFormats(ajv);
  ajv.addFormat(BIG_ID_FORMAT, { type: 'string', validate: isBigId });
  app.setValidatorCompiler(({ schema }) => {
    if ((schema as { $id?: string }).$id === (RunSpecSchema as { $id?: string }).$id) {
      return (data: unknown) => {
        const r = validateSpec(data);
        if (r.ok) return { value: r.spec };
        const n = r.errors.length;
        return {
          error: new RetortError(
            'RETORT_SPEC_INVALID',
            `The run spec has ${n} problem${n === 1 ? '' : 's'}.`,
            r.errors,
          ),
        };
      };
    }
    return ajv.compile(schema);
  });
}

/** The JSON Pointer of the first string (or key) holding U+0000 in `v`, or null. */
function nulAt(v: unknown, at: string, depth = 0): string | null {
  if (typeof v === 'string') return v.includes('\0') ? at : null;
  if (typeof v !== 'object' || v === null || depth > 64) return null;
  for (const [k, child] of Object.entries(v)) {
    const here = `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    if (k.includes('\0')) return here;
    const found = nulAt(child, here, depth + 1);
    if (found) return found;
  }
  return null;
}
