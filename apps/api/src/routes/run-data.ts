import { Readable } from 'node:stream';
import {
  type Db,
  findArtifact,
  getArtifact,
  getRun,
  getSeries,
  listArtifacts,
  streamArtifact,
  toArtifactResource,
} from '@retort/db';
import { ArtifactSchema, ErrorBodySchema, MetricSeriesSchema, RetortError } from '@retort/spec';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { INT4_MAX, isUuid } from './ids.js';
import { checkRunId } from './runs.js';

const errors = { 401: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema };
const IdParams = Type.Object({ id: Type.String() });

type ArtifactRow = NonNullable<Awaited<ReturnType<typeof findArtifact>>>;

/** Streams an artifact's bytes with its length and an ETag of its sha256; answers 304 to a matching If-None-Match. */
function sendArtifact(
  request: FastifyRequest,
  reply: FastifyReply,
  db: Db,
  a: ArtifactRow,
  filename: string,
) {
  const etag = `"${a.sha256}"`;
  void reply.header('ETag', etag).header('Cache-Control', 'private, max-age=0, must-revalidate');
  if (request.headers['if-none-match'] === etag) return reply.status(304).send();
  return reply
    .header('Content-Type', a.contentType)
    .header('Content-Length', String(a.sizeBytes))
    .header('Content-Disposition', `attachment; filename="${filename.replace(/"/g, '')}"`)
    .send(Readable.from(streamArtifact(db, a.id)));
}

/** Metrics, artifacts and the trained model of a run. */
export function runDataRoutes(app: FastifyInstance, db: Db): void {
  app.get<{
    Params: { id: string };
    Querystring: { name?: string; fromStep?: number; maxPoints?: number; limit: number };
  }>(
    '/v1/runs/:id/metrics',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: "A run's metric series",
        description:
          'Series by name (`loss`, `loss_kd`, `loss_ce` per step; `val_loss`, `val_accuracy`, `val_agreement` per epoch). ' +
          'With `maxPoints`, a longer series is cut into that many buckets of consecutive points, each answered by its last step and mean value. ' +
          'Without it, each series answers at most `limit` points from `fromStep` on, and `nextFromStep` says where the rest begins.',
        params: IdParams,
        querystring: Type.Object({
          name: Type.Optional(
            Type.String({ maxLength: 2000, description: 'Comma-separated series names; all when absent.' }),
          ),
          fromStep: Type.Optional(Type.Integer({ minimum: 0, maximum: INT4_MAX })),
          maxPoints: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
          limit: Type.Integer({
            minimum: 1,
            maximum: 100_000,
            default: 10_000,
            description: 'Without `maxPoints`: the most points per series in one answer.',
          }),
        }),
        response: { 200: MetricSeriesSchema, ...errors },
      },
    },
    async (request) => {
      const run = await getRun(db, request.identity.teamId, checkRunId(request.params.id));
      const names = request.query.name
        ?.split(',')
        .map((n) => n.trim())
        .filter(Boolean);
      return getSeries(db, run.id, {
        names,
        fromStep: request.query.fromStep,
        maxPoints: request.query.maxPoints,
        limit: request.query.limit,
      });
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/runs/:id/artifacts',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: "A run's artifacts",
        params: IdParams,
        response: { 200: Type.Array(ArtifactSchema), ...errors },
      },
    },
    async (request) => {
      const run = await getRun(db, request.identity.teamId, checkRunId(request.params.id));
      return listArtifacts(db, run.id);
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/artifacts/:id',
    {
      config: { scope: 'runs:read' },
      schema: { summary: 'One artifact', params: IdParams, response: { 200: ArtifactSchema, ...errors } },
    },
    async (request) => {
      const a = await ownArtifact(db, request.identity.teamId, request.params.id);
      return toArtifactResource(a);
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/artifacts/:id/content',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: "An artifact's bytes",
        description: 'Streamed, with `Content-Length` and an `ETag` of the sha256.',
        params: IdParams,
        response: { 200: Type.Unknown({ description: 'the bytes' }), ...errors },
      },
    },
    async (request, reply) => {
      const a = await ownArtifact(db, request.identity.teamId, request.params.id);
      return sendArtifact(request, reply, db, a, a.name);
    },
  );

  app.get<{ Params: { id: string; file: string } }>(
    '/v1/runs/:id/model/:file',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: 'The trained model, in TensorFlow.js layers format',
        description:
          "`model.json` and the weight files it names; its paths are relative, so `tf.loadLayersModel('<base>/v1/runs/<id>/model/model.json', " +
          "{ requestInit: { headers: { Authorization: 'Bearer <key>' } } })` loads it. 404 until the run has succeeded.",
        params: Type.Object({ id: Type.String(), file: Type.String({ maxLength: 200 }) }),
        response: { 200: Type.Unknown(), ...errors },
      },
    },
    async (request, reply) => {
      const run = await getRun(db, request.identity.teamId, checkRunId(request.params.id));
      const a = await findArtifact(db, run.id, 'student-model', request.params.file);
      if (!a) {
        throw new RetortError(
          'RETORT_ARTIFACT_NOT_FOUND',
          run.status === 'succeeded'
            ? `run ${run.id} has no model file ${request.params.file}`
            : `run ${run.id} is ${run.status}; its model exists once it has succeeded`,
        );
      }
      return sendArtifact(request, reply, db, a, a.name);
    },
  );
}

async function ownArtifact(db: Db, teamId: string, id: string) {
  const a = isUuid(id) ? await getArtifact(db, id) : null;
  if (!a || a.teamId !== teamId)
    throw new RetortError('RETORT_ARTIFACT_NOT_FOUND', `artifact ${id} not found`);
  return a;
}
