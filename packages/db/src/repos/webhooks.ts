import { randomBytes } from 'node:crypto';
import { RetortError } from '@retort/spec';
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

/**
 * A new webhook and its signing secret (returned here, once). A team has at most `maxPerTeam`
 * (counted under a lock on the team, so two at once cannot both slip under it).
 */
export async function createWebhook(
  db: Db,
  input: { teamId: string; url: string; events: WebhookEvent[]; description?: string | undefined },
  maxPerTeam: number,
): Promise<{ webhook: WebhookRecord; secret: string }> {
  const secret = `whsec_${randomBytes(32).toString('base64url')}`;
  const webhook = await db.prisma.$transaction(async (tx) => {
    await tx.$queryRaw`SELECT id FROM teams WHERE id = ${input.teamId}::uuid FOR UPDATE`;
    const n = await tx.webhook.count({ where: { teamId: input.teamId } });
    if (n >= maxPerTeam)
      throw new RetortError(
        'RETORT_LIMIT_REACHED',
        `The team has ${n} webhooks, the most this server keeps for one team; delete one first.`,
      );
    return tx.webhook.create({
      data: {
        teamId: input.teamId,
        url: input.url,
        events: [...new Set(input.events)],
        secret,
        description: input.description ?? null,
      },
      select: fields,
    });
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
  teamId: string;
  event: string;
  payload: unknown;
  attempts: number;
  url: string;
  secret: string;
}

export interface ClaimDeliveries {
  /** At most this many in all. */
  limit: number;
  /** At most this many of one team's in flight, counting `busy`. */
  perTeam: number;
  /** Deliveries already in flight, by team. */
  busy: Map<string, number>;
  /** Another process skips a claimed delivery this long; if this one dies, it comes due again after. */
  leaseMs: number;
}

/**
 * Leases deliveries that are due, fairly: each team's oldest first, teams taken in turn counting
 * what each already has in flight (a team with none goes before one with three, whatever the age
 * of their backlogs), none beyond a team's share of slots.
 */
export async function claimDueDeliveries(db: Db, c: ClaimDeliveries): Promise<DueDelivery[]> {
  if (c.limit <= 0) return [];
  const busyTeams = [...c.busy.keys()];
  const { rows } = await db.pool.query<{
    id: string;
    team_id: string;
    event: string;
    payload: unknown;
    attempts: number;
    url: string;
    secret: string;
  }>(
    `WITH teams AS (
       SELECT DISTINCT w.team_id, coalesce(b.n, 0) AS busy
         FROM webhooks w
         LEFT JOIN unnest($4::uuid[], $5::int[]) AS b(team_id, n) ON b.team_id = w.team_id
     ),
     candidates AS (
       SELECT c.id, c.turn + t.busy AS place
         FROM teams t
        CROSS JOIN LATERAL (
          SELECT d.id, row_number() OVER (ORDER BY d.next_attempt_at, d.id) AS turn
            FROM webhook_deliveries d
            JOIN webhooks w ON w.id = d.webhook_id
           WHERE w.team_id = t.team_id AND d.status = 'pending' AND d.next_attempt_at <= now()
           ORDER BY d.next_attempt_at, d.id
           LIMIT greatest(0, $2::int - t.busy)
        ) c
        ORDER BY place, c.id
        LIMIT $1
     ),
     locked AS (
       SELECT d.id FROM webhook_deliveries d
        WHERE d.id IN (SELECT id FROM candidates)
          AND d.status = 'pending' AND d.next_attempt_at <= now()
        FOR UPDATE SKIP LOCKED
     )
     UPDATE webhook_deliveries d
     SET next_attempt_at = now() + make_interval(secs => $3::double precision / 1000)
     FROM locked, webhooks w
     WHERE d.id = locked.id AND w.id = d.webhook_id
     RETURNING d.id, w.team_id, d.event, d.payload, d.attempts, w.url, w.secret`,
    [c.limit, c.perTeam, c.leaseMs, busyTeams, busyTeams.map((t) => c.busy.get(t) ?? 0)],
  );
  return rows.map((r) => ({
    id: BigInt(r.id),
    teamId: r.team_id,
    event: r.event,
    payload: r.payload,
    attempts: r.attempts,
    url: r.url,
    secret: r.secret,
  }));
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
