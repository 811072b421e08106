import { type Db, listLiveWorkers } from '@retort/db';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import Type from 'typebox';

/** Health, readiness and the list of live workers. */
export function operationRoutes(
  app: FastifyInstance,
  deps: { db: Db; redis: Redis; workerStaleMs: number },
): void {
  app.get('/healthz', { schema: { summary: 'The process is up', security: [] } }, async () => ({
    status: 'ok',
  }));

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Postgres and Redis answer',
        description:
          'Each check is `ok` or `down`; why is in the server log, not here (the route is public).',
        security: [],
      },
    },
    async (request, reply) => {
      const check = async (name: string, f: () => Promise<unknown>) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            f(),
            new Promise((_, rej) => {
              timer = setTimeout(() => rej(new Error('no answer within 2 s')), 2000);
            }),
          ]);
          return 'ok';
        } catch (e) {
          request.log.warn({ dependency: name, err: String(e) }, 'readiness check failed');
          return 'down';
        } finally {
          clearTimeout(timer);
        }
      };
      const [postgres, redis] = await Promise.all([
        check('postgres', () => deps.db.pool.query('SELECT 1')),
        check('redis', () => deps.redis.ping()),
      ]);
      const ready = postgres === 'ok' && redis === 'ok';
      return reply.status(ready ? 200 : 503).send({
        status: ready ? 'ready' : 'unavailable',
        ...(ready ? {} : { code: 'RETORT_DEPENDENCY_UNAVAILABLE' }),
        checks: { postgres, redis },
      });
    },
  );

  app.get(
    '/v1/workers',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: 'Live workers',
        description: "Every live worker of the cluster; `currentRunId` only when the run is your team's.",
        response: {
          200: Type.Array(
            Type.Object({
              id: Type.String(),
              pool: Type.String(),
              backend: Type.String(),
              device: Type.String(),
              hostname: Type.String(),
              currentRunId: Type.Union([Type.String(), Type.Null()]),
              startedAt: Type.String({ format: 'date-time' }),
              heartbeatAt: Type.String({ format: 'date-time' }),
            }),
          ),
        },
      },
    },
    async (request) => {
      const workers = await listLiveWorkers(deps.db, deps.workerStaleMs);
      // The cluster is shared: another team's run id is not the caller's to see.
      const runIds = workers.map((w) => w.currentRunId).filter((id): id is string => id !== null);
      const own = new Set(
        (
          await deps.db.prisma.run.findMany({
            where: { id: { in: runIds }, teamId: request.identity.teamId },
            select: { id: true },
          })
        ).map((r) => r.id),
      );
      return workers.map((w) => ({
        id: w.id,
        pool: w.pool,
        backend: w.backend,
        device: w.device,
        hostname: w.hostname,
        currentRunId: w.currentRunId && own.has(w.currentRunId) ? w.currentRunId : null,
        startedAt: w.startedAt.toISOString(),
        heartbeatAt: w.heartbeatAt.toISOString(),
      }));
    },
  );
}
