import { isDatabaseUnavailable } from '@retort/db';
import { isRedisUnavailable } from '@retort/queue';
import { describeAjvErrors, isRetortError, RetortError } from '@retort/spec';
import type { ErrorObject } from 'ajv';
import type { FastifyError, FastifyInstance } from 'fastify';

function toRetortError(error: FastifyError | Error): RetortError {
  if (isRetortError(error)) return error;
  const e = error as FastifyError & { validation?: ErrorObject[]; validationContext?: string };
  if (e.validation) {
    const where = e.validationContext ?? 'request';
    const details = describeAjvErrors(e.validation).map((d) => ({
      path: `/${where}${d.path === '/' ? '' : d.path}`,
      message: d.message,
    }));
    return new RetortError('RETORT_REQUEST_INVALID', `The request's ${where} is invalid.`, details);
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new RetortError(
        'RETORT_PAYLOAD_TOO_LARGE',
        'The request body is larger than this server accepts.',
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new RetortError('RETORT_UNSUPPORTED_MEDIA_TYPE', 'Send the body as application/json.');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      // The parser's message quotes the body; the position is all a client needs.
      return new RetortError('RETORT_REQUEST_INVALID', 'The body is not valid JSON.');
  }
  if (isDatabaseUnavailable(e) || isRedisUnavailable(e))
    return new RetortError(
      'RETORT_DEPENDENCY_UNAVAILABLE',
      'A service Retort depends on is unavailable or too slow; nothing was done, try again shortly.',
    );
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new RetortError('RETORT_REQUEST_INVALID', e.message);
  }
  return new RetortError('RETORT_INTERNAL', 'Internal error.');
}

/** One place renders every error as `{ code, message, details? }`; 5xx bodies say nothing internal. */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => {
    const r = toRetortError(error as Error);
    if (r.statusCode >= 500) request.log.error({ err: error }, 'request failed');
    if (r.retryable && r.statusCode === 503) void reply.header('Retry-After', '5');
    return reply.status(r.statusCode).send(r.toJSON());
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send(
        new RetortError(
          'RETORT_NOT_FOUND',
          `No route ${request.method} ${request.url.split('?')[0]}`,
        ).toJSON(),
      ),
  );
}
