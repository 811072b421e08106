import { type Db, recordAudit } from '@retort/db';
import type { FastifyInstance } from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    /** What a write was about when the URL does not say (a created run, team, key, webhook). */
    auditTarget: string | null;
  }
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Every authenticated write, answered well or not, goes into the audit log: which key of which team,
 * the method and route, the id it concerned and the status it got. Recorded after the answer is
 * sent, so it adds nothing to the request's time; a failure to record is logged.
 */
export function registerAudit(app: FastifyInstance, db: Db): void {
  app.decorateRequest('auditTarget', null);
  app.addHook('onResponse', async (request, reply) => {
    if (!WRITES.has(request.method) || !request.identity) return;
    const params = (request.params ?? {}) as Record<string, string | undefined>;
    const target =
      request.auditTarget ?? params.keyId ?? params.webhookId ?? params.id ?? params.teamId ?? null;
    try {
      await recordAudit(db, {
        teamId: request.identity.teamId,
        keyId: request.identity.keyId,
        action: `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`,
        target,
        status: reply.statusCode,
        details: { requestId: request.id, ip: request.ip },
      });
    } catch (e) {
      request.log.error({ err: e }, 'could not record the audit entry');
    }
  });
}
