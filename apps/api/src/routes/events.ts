import { type Db, getRun, pointsOf, runEventsAfter } from '@retort/db';
import { ErrorBodySchema, RetortError } from '@retort/spec';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { sleep } from '../plugins/long-requests.js';
import { EventStreamWriter } from './event-stream.js';
import { BigIdSchema } from './ids.js';
import { checkRunId } from './runs.js';

const EventIdSchema = BigIdSchema('An event id, as sent in `id:` lines.');

const ENDED = new Set(['succeeded', 'failed', 'canceled']);
const HEARTBEAT_MS = 15_000;
/** Recorded events read from Postgres at a time while replaying. */
const PAGE = 200;

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
          '`progress` ({ status, epoch, step, totalSteps }) and a last `end`. Resume with `Last-Event-ID` or `?after=<event id>`. ' +
          'A stream ended early says why in an `error` event ({ code, message }): `RETORT_UNAUTHENTICATED` (the key was revoked) or `RETORT_SHUTTING_DOWN` (reconnect). ' +
          'A key may hold `RETORT_STREAMS_PER_KEY` streams and waits open at once (429 beyond).',
        params: Type.Object({ id: Type.String() }),
        querystring: Type.Object({ after: Type.Optional(EventIdSchema) }),
        headers: Type.Object({ 'last-event-id': Type.Optional(EventIdSchema) }),
        response: {
          200: Type.String({ description: 'text/event-stream' }),
          401: ErrorBodySchema,
          403: ErrorBodySchema,
          404: ErrorBodySchema,
          429: ErrorBodySchema,
        },
      },
    },
    async (request, reply) => {
      const teamId = request.identity.teamId;
      const id = checkRunId(request.params.id);
      await getRun(db, teamId, id); // 404 unless it is the team's
      const last = request.headers['last-event-id'];
      let cursor = BigInt((typeof last === 'string' ? last : undefined) ?? request.query.after ?? '0');
      // 429 beyond the key's open streams; ends early if the client leaves, the key is revoked or
      // this process stops.
      const held = app.longRequests.begin(request.identity, reply.raw);
      const stop = held.signal;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      const stream = new EventStreamWriter(res, stop);
      let lastProgress = '';
      try {
        while (!stop.aborted) {
          const run = await getRun(db, teamId, id);
          let ended = false;
          // Replay in pages, each written (and drained) before the next is read.
          for (;;) {
            const events = await runEventsAfter(db, id, cursor, PAGE);
            for (const e of events) {
              if (stop.aborted) break;
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
              await stream.send(e.type, data, e.id);
              cursor = e.id;
              if (e.type === 'status' && ENDED.has(String(e.data.status))) ended = true;
            }
            if (events.length < PAGE || stop.aborted) break;
          }
          if (stop.aborted) break;
          const progress = JSON.stringify({ status: run.status, ...toProgress(run) });
          if (progress !== lastProgress && !ENDED.has(run.status)) {
            await stream.send('progress', JSON.parse(progress));
            lastProgress = progress;
          }
          // The run read before the events: if it had ended, every event up to its end is out.
          if (ended || ENDED.has(run.status)) {
            await stream.send('end', { status: run.status });
            break;
          }
          if (Date.now() - stream.lastWrite > HEARTBEAT_MS) await stream.comment('keep-alive');
          await sleep(pollMs, stop);
        }
        const why = held.endedBy();
        if (why === 'revoked' || why === 'shutting-down') {
          const error =
            why === 'revoked'
              ? new RetortError('RETORT_UNAUTHENTICATED', 'The API key was revoked; the stream ends.')
              : new RetortError(
                  'RETORT_SHUTTING_DOWN',
                  'This API process is stopping; reconnect with Last-Event-ID to continue.',
                );
          await stream.send('error', error.toJSON());
        }
      } catch (e) {
        request.log.warn({ err: String(e) }, 'event stream stopped');
      } finally {
        held.close();
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
