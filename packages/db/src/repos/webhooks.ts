import { randomBytes } from 'node:crypto';
import type { Db } from '../client.js';

export const WEBHOOK_EVENTS = [
  'run.started',
  'run.succeeded',
  'run.failed',
  'run.canceled',
  'run.checkpointed',
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export interface WebhookRecord {
  id: string;
  teamId: string;
  url: string;
  events: string[];
  description: string | null;
  createdAt: Date;
}

const fields = {
  id: true,
  teamId: true,
  url: true,
  events: true,
  description: true,
  createdAt: true,
} as const;

/** A new webhook and its signing secret (returned here, once). */
export async function createWebhook(
  db: Db,
  input: { teamId: string; url: string; events: WebhookEvent[]; description?: string | undefined },
): Promise<{ webhook: WebhookRecord; secret: string }> {
  const secret = `whsec_${randomBytes(32).toString('base64url')}`;
  const webhook = await db.prisma.webhook.create({
    data: {
      teamId: input.teamId,
      url: input.url,
      events: [...new Set(input.events)],
      secret,
      description: input.description ?? null,
    },
    select: fields,
  });
  return { webhook, secret };
}

export async function listWebhooks(db: Db, teamId: string): Promise<WebhookRecord[]> {
  return db.prisma.webhook.findMany({ where: { teamId }, orderBy: { createdAt: 'asc' }, select: fields });
}

export async function getWebhook(db: Db, teamId: string, id: string): Promise<WebhookRecord | null> {
  return db.prisma.webhook.findFirst({ where: { id, teamId }, select: fields });
}

/** Deletes a team's webhook and its delivery history; false when it has none such. */
export async function deleteWebhook(db: Db, teamId: string, id: string): Promise<boolean> {
  const r = await db.prisma.webhook.deleteMany({ where: { id, teamId } });
  return r.count > 0;
}

export interface DeliveryRecord {
  id: string;
  event: string;
  runId: string | null;
  status: 'pending' | 'delivered' | 'failed';
  attempts: { at: Date; statusCode: number | null; error: string | null; durationMs: number }[];
  nextAttemptAt: Date | null;
  createdAt: Date;
  deliveredAt: Date | null;
}

/** A webhook's deliveries, newest first, each with its attempts. */
export async function listDeliveries(
  db: Db,
  webhookId: string,
  opts: { before?: bigint | undefined; limit: number },
): Promise<DeliveryRecord[]> {
  const rows = await db.prisma.webhookDelivery.findMany({
    where: { webhookId, ...(opts.before !== undefined ? { id: { lt: opts.before } } : {}) },
    orderBy: { id: 'desc' },
    take: opts.limit,
    include: { attemptLog: { orderBy: { id: 'asc' } } },
  });
  return rows.map((d) => ({
    id: d.id.toString(),
    event: d.event,
    runId: d.runId,
    status: d.status,
    attempts: d.attemptLog.map((a) => ({
      at: a.at,
      statusCode: a.statusCode,
      error: a.error,
      durationMs: a.durationMs,
    })),
    nextAttemptAt: d.status === 'pending' ? d.nextAttemptAt : null,
    createdAt: d.createdAt,
    deliveredAt: d.deliveredAt,
  }));
}

export interface DueDelivery {
  id: bigint;
  event: string;
  payload: unknown;
  attempts: number;
  url: string;
  secret: string;
}

/**
 * Takes up to `limit` deliveries that are due, leasing them for `leaseMs` (another process skips
 * them meanwhile; if this one dies, they come due again when the lease ends).
 */
export async function claimDueDeliveries(db: Db, limit: number, leaseMs: number): Promise<DueDelivery[]> {
  const { rows } = await db.pool.query<{
    id: string;
    event: string;
    payload: unknown;
    attempts: number;
    url: string;
    secret: string;
  }>(
    `WITH due AS (
       SELECT id FROM webhook_deliveries
       WHERE status = 'pending' AND next_attempt_at <= now()
       ORDER BY next_attempt_at, id
       LIMIT $1
       FOR UPDATE SKIP LOCKED
     )
     UPDATE webhook_deliveries d
     SET next_attempt_at = now() + make_interval(secs => $2::double precision / 1000)
     FROM due, webhooks w
     WHERE d.id = due.id AND w.id = d.webhook_id
     RETURNING d.id, d.event, d.payload, d.attempts, w.url, w.secret`,
    [limit, leaseMs],
  );
  return rows.map((r) => ({ ...r, id: BigInt(r.id) }));
}

/** Records one attempt: delivered, or failed and due again at `retryAt` (null: given up). */
export async function recordDeliveryAttempt(
  db: Db,
  id: bigint,
  attempt: { statusCode: number | null; error: string | null; durationMs: number; ok: boolean },
  retryAt: Date | null,
): Promise<void> {
  await db.prisma.$transaction([
    db.prisma.webhookAttempt.create({
      data: {
        deliveryId: id,
        statusCode: attempt.statusCode,
        error: attempt.error,
        durationMs: attempt.durationMs,
      },
    }),
    db.prisma.webhookDelivery.update({
      where: { id },
      data: {
        attempts: { increment: 1 },
        lastStatusCode: attempt.statusCode,
        lastError: attempt.error,
        ...(attempt.ok
          ? { status: 'delivered', deliveredAt: new Date() }
          : retryAt
            ? { nextAttemptAt: retryAt }
            : { status: 'failed' }),
      },
    }),
  ]);
}
