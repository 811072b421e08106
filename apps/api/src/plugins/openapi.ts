import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { ErrorBodySchema } from '@retort/spec';
import type { FastifyInstance, FastifySchema } from 'fastify';

/** The errors any route can answer with, by what the route takes; a route's own list comes first. */
function withCommonErrors(schema: FastifySchema, authenticated: boolean): FastifySchema {
  const responses: Record<string, unknown> = { ...((schema.response as Record<string, unknown>) ?? {}) };
  const add = (code: number, description: string) => {
    responses[code] ??= { ...ErrorBodySchema, description };
  };
  if (schema.body || schema.querystring || schema.params || schema.headers)
    add(
      400,
      'The request is invalid: `RETORT_REQUEST_INVALID` (or `RETORT_SPEC_INVALID` for a run spec), with details.',
    );
  if (authenticated) {
    add(401, '`RETORT_UNAUTHENTICATED`: no key, or one that is unknown or revoked.');
    add(403, '`RETORT_FORBIDDEN`: the key lacks the scope.');
    add(
      429,
      '`RETORT_RATE_LIMITED`: over the key’s requests a minute, or too many failed authentications from this address; see `Retry-After`.',
    );
  }
  if (schema.body) {
    add(413, '`RETORT_PAYLOAD_TOO_LARGE`: the body is over the limit.');
    add(415, '`RETORT_UNSUPPORTED_MEDIA_TYPE`: send application/json.');
  }
  add(500, '`RETORT_INTERNAL`.');
  add(503, '`RETORT_DEPENDENCY_UNAVAILABLE`: Postgres or Redis is down; retry after `Retry-After`.');
  return { ...schema, response: responses };
}

/**
 * OpenAPI generated from the same schemas the routes validate and serialize with; served at
 * /openapi.json, with Swagger UI (assets bundled, nothing fetched from the web) at /docs.
 */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Retort',
        version: '1.0.0',
        description:
          'Knowledge-distillation runs on a shared GPU cluster. Errors are `{ code, message, details? }`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: ({ schema, url, route }) => ({
      schema:
        schema && !(schema as { hide?: boolean }).hide
          ? withCommonErrors(schema, Boolean((route.config as { scope?: string } | undefined)?.scope))
          : schema,
      url,
    }),
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
