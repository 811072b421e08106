import rateLimit from '@fastify/rate-limit';
import { RetortError } from '@retort/spec';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';

/**
 * Per-key rate limits, counted in Redis so that every API process shares them: each key (each
 * client address on routes without a key) may make `perMinute` requests a minute; beyond that,
 * 429 with `Retry-After`. Counted after authentication, so the count is the key's, not the string
 * a client sends. Health checks are not limited; if Redis is down the limit is not enforced
 * rather than the API refusing everything.
 */
export async function registerRateLimit(
  app: FastifyInstance,
  redis: Redis,
  perMinute: number,
  prefix: string,
): Promise<void> {
  await app.register(rateLimit, {
    global: true,
    hook: 'preHandler',
    max: perMinute,
    timeWindow: 60_000,
    redis,
    nameSpace: `${prefix}:rate:`,
    skipOnError: true,
    keyGenerator: (request) => (request.identity ? `key:${request.identity.keyId}` : `ip:${request.ip}`),
    allowList: (request) => ['/healthz', '/readyz'].includes(request.url.split('?')[0]!),
    errorResponseBuilder: (_request, context) =>
      new RetortError(
        'RETORT_RATE_LIMITED',
        `Rate limit: ${context.max} requests a minute; try again in ${Math.ceil(context.ttl / 1000)} s.`,
      ),
  });
}
