import { type Db, findKey, type KeyIdentity, touchKey } from '@retort/db';
import { RetortError } from '@retort/spec';
import type { FastifyInstance, FastifyRequest } from 'fastify';

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
 * Bearer-key authentication for every route that declares a scope: 401 without a valid key, 403
 * when the key lacks the scope. A key's last use is recorded at most once a minute.
 */
export function registerAuth(app: FastifyInstance, db: Db): void {
  const touched = new Map<string, number>();
  app.decorateRequest('identity', null as unknown as KeyIdentity);
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const scope = request.routeOptions.config.scope;
    if (!scope) return;
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match)
      throw new RetortError('RETORT_UNAUTHENTICATED', 'Send an API key as `Authorization: Bearer <key>`.');
    const identity = await findKey(db, match[1]!);
    if (!identity)
      throw new RetortError('RETORT_UNAUTHENTICATED', 'The API key is not valid (unknown or revoked).');
    if (!identity.scopes.includes(scope) && !identity.scopes.includes('admin')) {
      throw new RetortError('RETORT_FORBIDDEN', `This key lacks the scope ${scope}.`);
    }
    request.identity = identity;
    const last = touched.get(identity.keyId) ?? 0;
    if (Date.now() - last > TOUCH_EVERY_MS) {
      touched.set(identity.keyId, Date.now());
      touchKey(db, identity.keyId).catch(() => {});
    }
  });
}
