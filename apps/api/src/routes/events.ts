import { type Db, getRun, pointsOf, runEventsAfter } from '@retort/db';
import { ErrorBodySchema } from '@retort/spec';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { checkRunId } from './runs.js';

const ENDED = new Set(['succeeded', 'failed', 'canceled']);
const HEARTBEAT_MS = 15_000;

/**
 * `GET /v1/runs/{id}/events`: the run's history and then its life as Server-Sent Events. Each
 * recorded event (`status`, `checkpoint`, `metrics` with its points) carries its id, so a client
 * that reconnects with `Last-Event-ID` (or `?after=`) continues where it was; `progress` is sent
 * whenever it moves (no id: it is a snapshot). The stream ends after the run's last status event.
 */
export function eventRoutes(app: FastifyInstance, db: Db, pollMs: number): void {
  app.get<{ Params: { id: string }; Querystring: { after?: string } }>(
    '/v1/runs/:id/events',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: "A run's events, live (Server-Sent Events)",
        description:
          'Events: `status` ({ status, reason, … }), `checkpoint` ({ artifactId, step, epoch, … }), `metrics` ({ fromStep, toStep, names, points: [{ name, step, value }] }), ' +
          '`progress` ({ status, epoch, step, totalSteps }) and a last `end`. Resume with `Last-Event-ID` or `?after=<event id>`.',
        params: Type.Object({ id: Type.String() }),
        querystring: Type.Object({ after: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$' })) }),
        headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$' })) }),
        response: {
          200: Type.String({ description: 'text/event-stream' }),
          401: ErrorBodySchema,
          403: ErrorBodySchema,
          404: ErrorBodySchema,
        },
      },
    },
    async (request, reply) => {
      const teamId = request.identity.teamId;
      const id = checkRunId(request.params.id);
      await getRun(db, teamId, id); // 404 unless it is the team's
      const last = request.headers['last-event-id'];
      let cursor = BigInt((typeof last === 'string' ? last : undefined) ?? request.query.after ?? '0');
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      let open = true;
      res.on('close', () => {
        open = false;
      });
      let lastWrite = Date.now();
      const send = (event: string, data: unknown, eventId?: bigint) => {
        res.write(
          `${eventId !== undefined ? `id: ${eventId}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
        );
        lastWrite = Date.now();
      };
      let lastProgress = '';
      try {
        while (open) {
          const run = await getRun(db, teamId, id);
          let ended = false;
          for (;;) {
            const events = await runEventsAfter(db, id, cursor, 200);
            for (const e of events) {
              const data =
                e.type === 'metrics'
                  ? {
                      ...e.data,
                      points: await pointsOf(
                        db,
                        id,
                        e.data as { fromStep: number; toStep: number; names: string[] },
                      ),
                    }
                  : e.data;
              send(e.type, data, e.id);
              cursor = e.id;
              if (e.type === 'status' && ENDED.has(String(e.data.status))) ended = true;
            }
            if (events.length < 200) break;
          }
          const progress = JSON.stringify({ status: run.status, ...toProgress(run) });
          if (progress !== lastProgress && !ENDED.has(run.status)) {
            send('progress', JSON.parse(progress));
            lastProgress = progress;
          }
          // The run read before the events: if it had ended, every event up to its end is out.
          if (ended || ENDED.has(run.status)) {
            send('end', { status: run.status });
            break;
          }
          if (Date.now() - lastWrite > HEARTBEAT_MS) {
            res.write(': keep-alive\n\n');
            lastWrite = Date.now();
          }
          await new Promise((r) => setTimeout(r, pollMs));
        }
      } catch (e) {
        request.log.warn({ err: String(e) }, 'event stream stopped');
      } finally {
        res.end();
      }
    },
  );
}

const toProgress = (r: { epoch: number; step: number; totalSteps: number | null }) => ({
  epoch: r.epoch,
  step: r.step,
  totalSteps: r.totalSteps,
});
