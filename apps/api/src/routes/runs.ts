import type { ServerResponse } from 'node:http';
import {
  type Db,
  getRun,
  type KeyIdentity,
  listRuns,
  requestCancel,
  requestPause,
  resumeRun,
  retryRun,
  toRunResource,
} from '@retort/db';
import type { RunProducer } from '@retort/queue';
import {
  ErrorBodySchema,
  RetortError,
  RunSchema,
  type RunSpec,
  RunSpecSchema,
  type RunStatus,
  RunStatuses,
} from '@retort/spec';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { sleep } from '../plugins/long-requests.js';
import { applyTransition, contextProblems, type SubmitDeps, submitRun } from '../services/submit-run.js';
import { isUuid } from './ids.js';

const IdParams = Type.Object({ id: Type.String() });

/** Long polling for pipelines: answer when the run has ended. */
const WaitQuery = {
  wait: Type.Boolean({ default: false, description: 'Answer when the run has ended (or at the timeout).' }),
  timeout: Type.Integer({
    minimum: 1,
    maximum: 3600,
    default: 600,
    description: 'With `wait`: answer after this many seconds at most, with the run as it stands.',
  }),
};
const ENDED = new Set(['succeeded', 'failed', 'canceled']);
const WAIT_POLL_MS = 500;

/**
 * The run once it has ended, or as it stands after `timeoutS` seconds, when the client has gone
 * (`raw` closed) or when this process stops. A key revoked meanwhile answers 401. Counts against
 * the key's open streams and waits.
 */
async function waitForEnd(
  app: FastifyInstance,
  db: Db,
  identity: KeyIdentity,
  id: string,
  timeoutS: number,
  raw: ServerResponse,
) {
  const held = app.longRequests.begin(identity, raw);
  const stop = held.signal;
  const deadline = Date.now() + timeoutS * 1000;
  try {
    for (;;) {
      const run = await getRun(db, identity.teamId, id);
      if (held.endedBy() === 'revoked')
        throw new RetortError('RETORT_UNAUTHENTICATED', 'The API key was revoked while the request waited.');
      if (ENDED.has(run.status) || stop.aborted || Date.now() >= deadline) return run;
      await sleep(Math.min(WAIT_POLL_MS, Math.max(0, deadline - Date.now())), stop);
    }
  } finally {
    held.close();
  }
}

/** A malformed id names no run: it answers 404 like any other unknown id. */
export function checkRunId(id: string): string {
  if (!isUuid(id)) throw new RetortError('RETORT_RUN_NOT_FOUND', `run ${id} not found`);
  return id;
}

const errors = {
  400: ErrorBodySchema,
  401: ErrorBodySchema,
  403: ErrorBodySchema,
  404: ErrorBodySchema,
  409: ErrorBodySchema,
};

const ListQuery = Type.Object({
  status: Type.Optional(Type.String({ description: `Comma-separated statuses: ${RunStatuses.join(', ')}.` })),
  tag: Type.Optional(
    Type.Array(Type.String({ pattern: '^[^:]+:.*$' }), {
      description: 'key:value; repeat to require several.',
    }),
  ),
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'The previous page’s nextCursor.' })),
});

export function runRoutes(app: FastifyInstance, deps: SubmitDeps & { db: Db; producer: RunProducer }): void {
  app.post<{
    Body: RunSpec;
    Querystring: { dryRun?: boolean; wait: boolean; timeout: number };
    Headers: { 'idempotency-key'?: string };
  }>(
    '/v1/runs',
    {
      config: { scope: 'runs:write' },
      schema: {
        summary: 'Submit a run',
        description:
          'Validates the spec (every problem is listed, as JSON Pointers), records the run and queues it. ' +
          'The same `Idempotency-Key` from the same team returns the first run (200) instead of a second one. ' +
          '`?dryRun=true` validates and checks that the URIs resolve, without queueing.',
        body: RunSpecSchema,
        querystring: Type.Object({ dryRun: Type.Boolean({ default: false }), ...WaitQuery }),
        headers: Type.Object({
          'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
        }),
        response: {
          200: Type.Union([RunSchema, Type.Object({ valid: Type.Literal(true), spec: Type.Unknown() })]),
          201: RunSchema,
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const spec = request.body;
      if (request.query.dryRun) {
        const problems = await contextProblems(deps, request.identity, spec, true);
        if (problems.length > 0)
          throw new RetortError(
            'RETORT_SPEC_INVALID',
            `The run spec has ${problems.length} problem(s).`,
            problems,
          );
        return reply.status(200).send({ valid: true, spec });
      }
      const { run, created } = await submitRun(
        deps,
        request.identity,
        spec,
        request.headers['idempotency-key'],
      );
      request.auditTarget = run.id;
      // The run exists now: a wait that cannot go on (Postgres gone meanwhile, the key's share of
      // waits taken, the key revoked) answers with the run as created, never with an error that
      // would read as "not submitted".
      const answer = request.query.wait
        ? await waitForEnd(app, deps.db, request.identity, run.id, request.query.timeout, reply.raw).catch(
            (e: unknown) => {
              request.log.warn(
                { runId: run.id, err: String(e) },
                'wait ended early; answering the run as created',
              );
              return run;
            },
          )
        : run;
      return reply.status(created ? 201 : 200).send(toRunResource(answer));
    },
  );

  app.get<{ Querystring: { status?: string; tag?: string[]; limit: number; cursor?: string } }>(
    '/v1/runs',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: 'List runs, newest first',
        querystring: ListQuery,
        response: {
          200: Type.Object({
            items: Type.Array(RunSchema),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const q = request.query;
      const status = q.status
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean) as RunStatus[] | undefined;
      const bad = status?.filter((s) => !RunStatuses.includes(s));
      if (bad?.length) {
        throw new RetortError('RETORT_REQUEST_INVALID', 'Unknown status.', [
          {
            path: '/querystring/status',
            message: `${bad.join(', ')} is not one of ${RunStatuses.join(', ')}`,
          },
        ]);
      }
      const tags = Object.fromEntries(
        (q.tag ?? []).map((t) => [t.slice(0, t.indexOf(':')), t.slice(t.indexOf(':') + 1)]),
      );
      const page = await listRuns(deps.db, request.identity.teamId, {
        status,
        tags,
        limit: q.limit,
        cursor: q.cursor,
      });
      return { items: page.items.map(toRunResource), nextCursor: page.nextCursor };
    },
  );

  app.get<{ Params: { id: string }; Querystring: { wait: boolean; timeout: number } }>(
    '/v1/runs/:id',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: 'One run',
        description:
          'With `?wait=true`, answers when the run has ended (or after `timeout` seconds, with the run as it stands). Its `verdict` says whether it passed its `accept` thresholds.',
        params: IdParams,
        querystring: Type.Object(WaitQuery),
        response: { 200: RunSchema, ...errors },
      },
    },
    async (request, reply) => {
      const teamId = request.identity.teamId;
      const run = await getRun(deps.db, teamId, checkRunId(request.params.id));
      return toRunResource(
        request.query.wait
          ? await waitForEnd(app, deps.db, request.identity, run.id, request.query.timeout, reply.raw)
          : run,
      );
    },
  );

  const lifecycle = (action: 'cancel' | 'pause' | 'resume' | 'retry', description: string) =>
    app.post<{ Params: { id: string } }>(
      `/v1/runs/:id/${action}`,
      {
        config: { scope: 'runs:write' },
        schema: {
          summary: `${action[0]!.toUpperCase()}${action.slice(1)} a run`,
          description,
          params: IdParams,
          response: { 200: RunSchema, ...errors },
        },
      },
      async (request) => {
        const id = checkRunId(request.params.id);
        const teamId = request.identity.teamId;
        const t =
          action === 'cancel'
            ? await requestCancel(deps.db, teamId, id)
            : action === 'pause'
              ? await requestPause(deps.db, teamId, id)
              : action === 'resume'
                ? await resumeRun(deps.db, teamId, id)
                : await retryRun(deps.db, teamId, id);
        await applyTransition(deps, t, action === 'pause' ? 'pause' : 'cancel');
        return toRunResource(t.run);
      },
    );

  lifecycle(
    'cancel',
    'A queued or paused run is canceled at once (a queued one never starts); a running one stops before its next step and ends `canceled`. 409 once the run has ended.',
  );
  lifecycle(
    'pause',
    'A queued run is paused at once; a running one checkpoints before its next step, leaves its worker and becomes `paused`. Pausing a paused run does nothing. 409 otherwise.',
  );
  lifecycle(
    'resume',
    'A paused run goes back on the queue and continues from its checkpoint. 409 unless the run is paused.',
  );
  lifecycle(
    'retry',
    'A failed run goes back on the queue and continues from its last checkpoint, with its retries counted afresh. 409 unless the run failed.',
  );
}
