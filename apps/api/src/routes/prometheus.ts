import type { Db } from '@retort/db';
import type { FastifyInstance } from 'fastify';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import Type from 'typebox';

/**
 * `GET /metrics` in Prometheus' text format: this process (CPU, memory, event-loop lag), its HTTP
 * traffic by route and status, and the cluster as Postgres sees it at scrape time (runs by status,
 * live workers, webhook deliveries by status). Needs an `admin` key (a Prometheus scrape config
 * sends it with `authorization: { credentials: … }`).
 */
export function prometheusRoutes(app: FastifyInstance, db: Db, workerStaleMs: number): void {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'retort_http_requests_total',
    help: 'HTTP requests answered, by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'retort_http_request_duration_seconds',
    help: 'Time to answer, by method and route (event streams and waits excluded).',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const runs = new Gauge({
    name: 'retort_runs',
    help: 'Runs by status, all teams.',
    labelNames: ['status'] as const,
    registers: [registry],
  });
  const workers = new Gauge({
    name: 'retort_workers_live',
    help: 'Workers that heartbeat recently.',
    registers: [registry],
  });
  const deliveries = new Gauge({
    name: 'retort_webhook_deliveries',
    help: 'Webhook deliveries by status.',
    labelNames: ['status'] as const,
    registers: [registry],
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    const q = request.query as { wait?: boolean } | undefined;
    if (!route.endsWith('/events') && !q?.wait)
      duration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });

  app.get(
    '/metrics',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Prometheus metrics',
        tags: ['operations'],
        response: { 200: Type.String({ description: 'Prometheus text exposition format' }) },
      },
    },
    async (_request, reply) => {
      const [byStatus, live, outbox] = await Promise.all([
        db.pool.query<{ status: string; n: string }>(
          'SELECT status, count(*) AS n FROM runs GROUP BY status',
        ),
        db.pool.query<{ n: string }>(
          `SELECT count(*) AS n FROM workers WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => $1::double precision / 1000)`,
          [workerStaleMs],
        ),
        db.pool.query<{ status: string; n: string }>(
          'SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status',
        ),
      ]);
      runs.reset();
      for (const s of ['queued', 'running', 'paused', 'succeeded', 'failed', 'canceled'])
        runs.set({ status: s }, 0);
      for (const r of byStatus.rows) runs.set({ status: r.status }, Number(r.n));
      workers.set(Number(live.rows[0]?.n ?? 0));
      deliveries.reset();
      for (const r of outbox.rows) deliveries.set({ status: r.status }, Number(r.n));
      return reply.header('content-type', registry.contentType).send(await registry.metrics());
    },
  );
}
