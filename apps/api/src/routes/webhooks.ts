import {
  createWebhook,
  type Db,
  deleteWebhook,
  getWebhook,
  listDeliveries,
  listWebhooks,
  WEBHOOK_EVENTS,
  type WebhookEvent,
  type WebhookRecord,
} from '@retort/db';
import { ErrorBodySchema, RetortError } from '@retort/spec';
import { describeRefusal, resolvePublicAddress, type UriPolicy } from '@retort/uri-policy';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { BigIdSchema, isUuid } from './ids.js';

const errors = { 400: ErrorBodySchema, 401: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema };
const WebhookParams = Type.Object({ webhookId: Type.String() });

const WebhookSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  url: Type.String(),
  events: Type.Array(Type.String()),
  description: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
});
const DeliverySchema = Type.Object({
  id: Type.String(),
  event: Type.String(),
  runId: Type.Union([Type.String(), Type.Null()]),
  status: Type.Enum(['pending', 'delivered', 'failed']),
  attempts: Type.Array(
    Type.Object({
      at: Type.String({ format: 'date-time' }),
      statusCode: Type.Union([Type.Integer(), Type.Null()]),
      error: Type.Union([Type.String(), Type.Null()]),
      durationMs: Type.Integer(),
    }),
  ),
  nextAttemptAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  deliveredAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

const resource = (w: WebhookRecord) => ({
  id: w.id,
  url: w.url,
  events: w.events,
  description: w.description,
  createdAt: w.createdAt.toISOString(),
});

/** Where deliveries may go: http(s) to an address outside the cluster (unless configured), no credentials in the URL. */
async function checkUrl(url: string, policy: UriPolicy): Promise<void> {
  const bad = (message: string) =>
    new RetortError('RETORT_REQUEST_INVALID', 'The webhook URL cannot be used.', [
      { path: '/body/url', message },
    ]);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad('is not a URL');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw bad('must be http:// or https://');
  if (u.username || u.password) throw bad('must not carry credentials');
  try {
    await resolvePublicAddress(u.hostname, policy);
  } catch (e) {
    throw bad(describeRefusal(e));
  }
}

/** A team's webhooks for run events, and their deliveries. */
export function webhookRoutes(app: FastifyInstance, db: Db, policy: UriPolicy, maxPerTeam: number): void {
  app.post<{ Body: { url: string; events: WebhookEvent[]; description?: string } }>(
    '/v1/webhooks',
    {
      config: { scope: 'runs:write' },
      schema: {
        summary: 'Register a webhook',
        tags: ['webhooks'],
        description:
          "Retort POSTs each of the team's run events named in `events` to `url` as JSON, signed: the `Retort-Signature` header is " +
          '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" under the secret>`. The secret is in this answer only. ' +
          'A delivery that gets no 2xx is retried with exponential backoff; `GET /v1/webhooks/{id}/deliveries` lists every attempt. ' +
          'A team has at most `RETORT_WEBHOOKS_PER_TEAM` webhooks (409 `RETORT_LIMIT_REACHED` beyond).',
        body: Type.Object(
          {
            url: Type.String({ minLength: 1, maxLength: 2000 }),
            events: Type.Array(Type.Enum([...WEBHOOK_EVENTS]), { minItems: 1, uniqueItems: true }),
            description: Type.Optional(Type.String({ maxLength: 200 })),
          },
          { additionalProperties: false },
        ),
        response: {
          409: ErrorBodySchema,
          201: Type.Object({
            ...WebhookSchema.properties,
            secret: Type.String({ description: 'Signs the deliveries; shown this once.' }),
          }),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      await checkUrl(request.body.url, policy);
      const { webhook, secret } = await createWebhook(
        db,
        { teamId: request.identity.teamId, ...request.body },
        maxPerTeam,
      );
      request.auditTarget = webhook.id;
      return reply.status(201).send({ ...resource(webhook), secret });
    },
  );

  app.get(
    '/v1/webhooks',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: "The team's webhooks",
        tags: ['webhooks'],
        response: { 200: Type.Object({ items: Type.Array(WebhookSchema) }), ...errors },
      },
    },
    async (request) => ({ items: (await listWebhooks(db, request.identity.teamId)).map(resource) }),
  );

  const own = async (teamId: string, id: string) => {
    const w = isUuid(id) ? await getWebhook(db, teamId, id) : null;
    if (!w) throw new RetortError('RETORT_NOT_FOUND', `No webhook ${id}.`);
    return w;
  };

  app.delete<{ Params: { webhookId: string } }>(
    '/v1/webhooks/:webhookId',
    {
      config: { scope: 'runs:write' },
      schema: {
        summary: 'Delete a webhook',
        description: 'Deliveries still pending are dropped with it.',
        tags: ['webhooks'],
        params: WebhookParams,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      const w = await own(request.identity.teamId, request.params.webhookId);
      await deleteWebhook(db, request.identity.teamId, w.id);
      return reply.status(204).send();
    },
  );

  app.get<{ Params: { webhookId: string }; Querystring: { limit: number; cursor?: string } }>(
    '/v1/webhooks/:webhookId/deliveries',
    {
      config: { scope: 'runs:read' },
      schema: {
        summary: "A webhook's deliveries, newest first, with every attempt",
        tags: ['webhooks'],
        params: WebhookParams,
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
          cursor: Type.Optional(BigIdSchema('The previous page’s nextCursor')),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(DeliverySchema),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const w = await own(request.identity.teamId, request.params.webhookId);
      const q = request.query;
      const rows = await listDeliveries(db, w.id, {
        before: q.cursor ? BigInt(q.cursor) : undefined,
        limit: q.limit,
      });
      const iso = (d: Date | null) => (d ? d.toISOString() : null);
      return {
        items: rows.map((d) => ({
          ...d,
          attempts: d.attempts.map((a) => ({ ...a, at: a.at.toISOString() })),
          nextAttemptAt: iso(d.nextAttemptAt),
          createdAt: d.createdAt.toISOString(),
          deliveredAt: iso(d.deliveredAt),
        })),
        nextCursor: rows.length === q.limit ? rows[rows.length - 1]!.id : null,
      };
    },
  );
}
