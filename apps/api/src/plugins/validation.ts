import { RetortError, RunSpecSchema, validateSpec } from '@retort/spec';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { FastifyInstance } from 'fastify';

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
  const ajv = new Ajv({
    allErrors: true,
    coerceTypes: 'array',
    useDefaults: true,
    removeAdditional: true,
    strict: false,
  });
  addFormats(ajv);
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
