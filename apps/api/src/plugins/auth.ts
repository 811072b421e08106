import { type Db, findKey, type KeyIdentity, touchKey } from '@retort/db';
import { RetortError } from '@retort/spec';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RateLimiters } from './rate-limit.js';

export type Scope = 'runs:read' | 'runs:write' | 'admin';

declare module 'fastify' {
  interface FastifyRequest {
    identity: KeyIdentity;
  }
  interface FastifyContextConfig {
    /** The scope a route needs; routes without one are public (health, docs). */
    scope?: Scope;
  }
}

const TOUCH_EVERY_MS = 60_000;

/**
 * The gate every request passes. Routes that declare a scope need a bearer key: 401 without a
 * valid one, 403 when it lacks the scope. Failures count against the client's address: past the
 * limit it gets 429 before any key is looked up. Then the request counts against its key's rate
 * limit (its address's, on routes without a key), those that go on to fail validation or their
 * scope included. The identity is set before the scope is checked, so a refused write is still
 * audited. A key's last use is recorded at most once a minute.
 */
export function registerAuth(app: FastifyInstance, db: Db, limits: RateLimiters): void {
  const touched = new Map<string, number>();
  app.decorateRequest('identity', null as unknown as KeyIdentity);
  const refuse = async (request: FastifyRequest, reply: FastifyReply, message: string) => {
    await limits.recordAuthFailure(request, reply); // 429 once this address has failed too often
    throw new RetortError('RETORT_UNAUTHENTICATED', message);
  };
  app.addHook('onRequest', async (request, reply) => {
    const scope = request.routeOptions.config.scope;
    if (!scope) return limits.countRequest(request, reply);
    await limits.checkAuthFailures(request, reply);
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(\S{1,512})$/i.exec(header);
    if (!match) return refuse(request, reply, 'Send an API key as `Authorization: Bearer <key>`.');
    const identity = await findKey(db, match[1]!);
    if (!identity) return refuse(request, reply, 'The API key is not valid (unknown or revoked).');
    request.identity = identity;
    await limits.countRequest(request, reply);
    if (!identity.scopes.includes(scope) && !identity.scopes.includes('admin')) {
      throw new RetortError('RETORT_FORBIDDEN', `This key lacks the scope ${scope}.`);
    }
    const last = touched.get(identity.keyId) ?? 0;
    if (Date.now() - last > TOUCH_EVERY_MS) {
      touched.set(identity.keyId, Date.now());
      touchKey(db, identity.keyId).catch(() => {});
    }
  });
}
