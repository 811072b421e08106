import { RetortError } from '@retort/spec';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

export interface RateLimits {
  /** Requests a minute per API key (per client address on routes without one). */
  perMinute: number;
  /** Failed authentications a minute per client address. */
  authFailuresPerMinute: number;
  prefix: string;
}

/** Counters in Redis, shared by every API process; while Redis is not ready, each process counts alone. */
function limiter(redis: Redis, keyPrefix: string, points: number): RateLimiterRedis {
  return new RateLimiterRedis({
    storeClient: redis,
    keyPrefix,
    points,
    duration: 60,
    // Not ready means down: count in memory at once rather than wait for Redis.
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration: 60 }),
  });
}

const tooMany = (reply: FastifyReply, res: RateLimiterRes, message: string) => {
  void reply.header('Retry-After', String(Math.max(1, Math.ceil(res.msBeforeNext / 1000))));
  return new RetortError('RETORT_RATE_LIMITED', message);
};

/** Consumes one point; 429 with Retry-After when none is left. A limiter's own failure lets the request through. */
async function consume(
  l: RateLimiterRedis,
  key: string,
  reply: FastifyReply,
  message: (res: RateLimiterRes) => string,
): Promise<void> {
  try {
    await l.consume(key);
  } catch (e) {
    if (e instanceof RateLimiterRes) throw tooMany(reply, e, message(e));
    reply.log.warn({ err: String(e) }, 'rate limiter failed; request not counted');
  }
}

/** What auth asks of the limits: the gate every request passes (plugins/auth.ts calls it). */
export interface RateLimiters {
  /** 429 when this address has failed authentication too often this minute (no key is looked up then). */
  checkAuthFailures(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  /** Counts a failed authentication; 429 once the address is over its limit. */
  recordAuthFailure(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  /** Counts a request against its key (its address without one); 429 over the limit. Health checks are free. */
  countRequest(request: FastifyRequest, reply: FastifyReply): Promise<void>;
}

const UNLIMITED = new Set(['/healthz', '/readyz']);

/**
 * Rate limits, counted in Redis so that every API process shares them: each key (each client
 * address on routes without a key) may make `perMinute` requests a minute, and each address may
 * fail authentication `authFailuresPerMinute` times; beyond either, 429 with `Retry-After`. A
 * key's count is the key's, not the string a client sends: auth counts a request once it knows
 * the key. While Redis is down every process counts on its own.
 */
export function rateLimiters(redis: Redis, limits: RateLimits): RateLimiters {
  const requests = limiter(redis, `${limits.prefix}:rate:req`, limits.perMinute);
  const failures = limiter(redis, `${limits.prefix}:rate:authfail`, limits.authFailuresPerMinute);
  const failed = (ms: number) =>
    `Too many failed authentications from this address; try again in ${Math.ceil(ms / 1000)} s.`;
  return {
    async checkAuthFailures(request, reply) {
      const res = await failures.get(`ip:${request.ip}`).catch(() => null);
      if (res && res.consumedPoints >= limits.authFailuresPerMinute)
        throw tooMany(reply, res, failed(res.msBeforeNext));
    },
    async recordAuthFailure(request, reply) {
      await consume(failures, `ip:${request.ip}`, reply, (r) => failed(r.msBeforeNext));
    },
    async countRequest(request, reply) {
      if (UNLIMITED.has(request.url.split('?')[0]!)) return;
      const key = request.identity ? `key:${request.identity.keyId}` : `ip:${request.ip}`;
      await consume(
        requests,
        key,
        reply,
        (r) =>
          `Rate limit: ${limits.perMinute} requests a minute; try again in ${Math.ceil(r.msBeforeNext / 1000)} s.`,
      );
    },
  };
}
