import {
  RetortError,
  type RunError,
  type RunResource,
  type RunSpec,
  type RunStatus,
  type RunSummary,
  verdictOf,
} from '@retort/spec';
import type { Db } from '../client.js';
import type { Prisma, Run } from '../generated/prisma/client.js';

export type RunRow = Run;

export function toRunResource(r: Run): RunResource {
  return {
    id: r.id,
    name: r.name,
    kind: r.kind,
    status: r.status,
    spec: r.spec,
    priority: r.priority,
    pool: r.pool,
    tags: r.tags as Record<string, string>,
    attempt: r.attempt,
    progress: { epoch: r.epoch, step: r.step, totalSteps: r.totalSteps },
    summary: (r.summary as RunSummary | null) ?? null,
    error: (r.error as RunError | null) ?? null,
    backend: r.backend,
    device: r.device,
    createdAt: r.createdAt.toISOString(),
    startedAt: r.startedAt?.toISOString() ?? null,
    finishedAt: r.finishedAt?.toISOString() ?? null,
    verdict: verdictOf(
      r.status,
      (r.spec as unknown as RunSpec).accept,
      (r.summary as RunSummary | null) ?? null,
    ),
  };
}

export function statusEvent(
  runId: string,
  status: RunStatus,
  reason: string,
  extra: Record<string, unknown> = {},
) {
  return { runId, type: 'status', data: { status, reason, ...extra } as Prisma.InputJsonValue };
}

/**
 * Inserts a queued run. With an idempotency key, a second submission from the same team returns
 * the first run (`created: false`) instead of a new one, even when both race.
 */
export async function createRun(
  db: Db,
  input: { teamId: string; spec: RunSpec; idempotencyKey?: string | undefined },
): Promise<{ run: Run; created: boolean }> {
  const { teamId, spec, idempotencyKey } = input;
  if (idempotencyKey) {
    const prior = await db.prisma.run.findUnique({
      where: { teamId_idempotencyKey: { teamId, idempotencyKey } },
    });
    if (prior) return { run: prior, created: false };
  }
  try {
    const run = await db.prisma.$transaction(async (tx) => {
      const r = await tx.run.create({
        data: {
          teamId,
          name: spec.name,
          kind: spec.kind,
          spec: spec as unknown as Prisma.InputJsonValue,
          priority: spec.priority,
          pool: spec.resources.pool,
          tags: spec.tags,
          idempotencyKey: idempotencyKey ?? null,
          // The first queue entry is dispatch 1.
          dispatch: 1,
        },
      });
      await tx.runEvent.create({ data: statusEvent(r.id, 'queued', 'submitted') });
      return r;
    });
    return { run, created: true };
  } catch (e) {
    if (idempotencyKey && (e as { code?: string }).code === 'P2002') {
      const prior = await db.prisma.run.findUnique({
        where: { teamId_idempotencyKey: { teamId, idempotencyKey } },
      });
      if (prior) return { run: prior, created: false };
    }
    throw e;
  }
}

export async function getRun(db: Db, teamId: string, id: string): Promise<Run> {
  const run = await db.prisma.run.findFirst({ where: { id, teamId } });
  if (!run) throw new RetortError('RETORT_RUN_NOT_FOUND', `run ${id} not found`);
  return run;
}

/** For workers: a run by id, whatever its team. */
export async function getRunById(db: Db, id: string): Promise<Run | null> {
  return db.prisma.run.findUnique({ where: { id } });
}

export interface ListRunsQuery {
  status?: RunStatus[] | undefined;
  tags?: Record<string, string> | undefined;
  limit: number;
  cursor?: string | undefined;
}

/** Newest first; keyset pagination on (created_at, id) so pages stay stable while runs are added. */
export async function listRuns(
  db: Db,
  teamId: string,
  q: ListRunsQuery,
): Promise<{ items: Run[]; nextCursor: string | null }> {
  const where: Prisma.RunWhereInput = { teamId };
  if (q.status?.length) where.status = { in: q.status };
  const and: Prisma.RunWhereInput[] = [];
  for (const [k, v] of Object.entries(q.tags ?? {})) and.push({ tags: { path: [k], equals: v } });
  if (q.cursor) {
    const c = decodeCursor(q.cursor);
    and.push({ OR: [{ createdAt: { lt: c.createdAt } }, { createdAt: c.createdAt, id: { lt: c.id } }] });
  }
  if (and.length) where.AND = and;
  const rows = await db.prisma.run.findMany({
    where,
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: q.limit + 1,
  });
  const items = rows.slice(0, q.limit);
  const last = items[items.length - 1];
  return { items, nextCursor: rows.length > q.limit && last ? encodeCursor(last) : null };
}

function encodeCursor(r: Run): string {
  return Buffer.from(`${r.createdAt.toISOString()}|${r.id}`).toString('base64url');
}

/** Cursors are `<ISO time>|<uuid>`, base64url; anything else (forged, truncated) is refused with 400. */
function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [ts, id, ...rest] = Buffer.from(cursor, 'base64url').toString().split('|');
  const createdAt = new Date(ts ?? '');
  const time = createdAt.getTime();
  if (
    rest.length > 0 ||
    !id ||
    !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id) ||
    !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(ts ?? '') ||
    Number.isNaN(time) ||
    createdAt.toISOString() !== ts
  ) {
    throw new RetortError('RETORT_REQUEST_INVALID', 'cursor is not one this server issued', [
      { path: '/querystring/cursor', message: 'is not a cursor this server issued' },
    ]);
  }
  return { createdAt, id };
}

export async function addRunEvent(
  db: Db,
  runId: string,
  type: string,
  data: Record<string, unknown>,
): Promise<void> {
  await db.prisma.runEvent.create({ data: { runId, type, data: data as Prisma.InputJsonValue } });
}

export interface RunEventRow {
  id: bigint;
  type: string;
  data: Record<string, unknown>;
  createdAt: Date;
}

/** A run's events after `after` (an event id), oldest first. */
export async function runEventsAfter(
  db: Db,
  runId: string,
  after: bigint,
  limit: number,
): Promise<RunEventRow[]> {
  const rows = await db.prisma.runEvent.findMany({
    where: { runId, id: { gt: after } },
    orderBy: { id: 'asc' },
    take: limit,
  });
  return rows.map((r) => ({
    id: r.id,
    type: r.type,
    data: r.data as Record<string, unknown>,
    createdAt: r.createdAt,
  }));
}
