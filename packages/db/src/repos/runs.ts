import {
  RetortError,
  type RunError,
  type RunResource,
  type RunSpec,
  type RunStatus,
  type RunSummary,
} from '@retort/spec';
import type { Db } from '../client.js';
import { FencedOutError } from '../client.js';
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
  };
}

function statusEvent(runId: string, status: RunStatus, reason: string, extra: Record<string, unknown> = {}) {
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

function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [ts, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const createdAt = new Date(ts ?? '');
  if (!id || Number.isNaN(createdAt.getTime()) || !/^[0-9a-f-]{36}$/i.test(id)) {
    throw new RetortError('RETORT_REQUEST_INVALID', 'cursor is not one this server issued', [
      { path: '/cursor', message: 'is invalid' },
    ]);
  }
  return { createdAt, id };
}

/**
 * Cancels a run. A queued run is canceled at once (the caller removes its queue entry); a running
 * one is marked, and its worker stops at the next step. Returns what happened.
 */
export async function requestCancel(
  db: Db,
  teamId: string,
  id: string,
): Promise<{ run: Run; immediate: boolean }> {
  return db.prisma.$transaction(async (tx) => {
    const run = await tx.run.findFirst({ where: { id, teamId } });
    if (!run) throw new RetortError('RETORT_RUN_NOT_FOUND', `run ${id} not found`);
    if (run.status === 'queued' || run.status === 'paused') {
      const done = await tx.run.updateMany({
        where: { id, status: run.status },
        data: { status: 'canceled', finishedAt: new Date(), cancelRequestedAt: new Date() },
      });
      if (done.count === 1) {
        await tx.runEvent.create({
          data: statusEvent(id, 'canceled', 'canceled by request before it started'),
        });
        return { run: await tx.run.findUniqueOrThrow({ where: { id } }), immediate: true };
      }
    }
    if (run.status === 'running') {
      const updated = await tx.run.update({
        where: { id },
        data: { cancelRequestedAt: run.cancelRequestedAt ?? new Date() },
      });
      if (!run.cancelRequestedAt)
        await tx.runEvent.create({ data: { runId: id, type: 'cancel-requested', data: {} } });
      return { run: updated, immediate: false };
    }
    throw new RetortError(
      'RETORT_INVALID_TRANSITION',
      `run ${id} is ${run.status}; only queued, paused or running runs can be canceled`,
    );
  });
}

/**
 * A worker takes a run: it becomes `running` and its attempt (the fencing token) goes up by one.
 * Returns null when the run is no longer there to take (canceled, finished, gone).
 */
export async function claimRun(
  db: Db,
  id: string,
  worker: { id: string; backend: string; device: string },
): Promise<Run | null> {
  return db.prisma.$transaction(async (tx) => {
    const claimed = await tx.run.updateMany({
      where: { id, status: { in: ['queued', 'running'] }, cancelRequestedAt: null },
      data: {
        status: 'running',
        attempt: { increment: 1 },
        workerId: worker.id,
        backend: worker.backend,
        device: worker.device,
      },
    });
    if (claimed.count === 0) return null;
    let run = await tx.run.findUniqueOrThrow({ where: { id } });
    if (!run.startedAt) run = await tx.run.update({ where: { id }, data: { startedAt: new Date() } });
    await tx.runEvent.create({
      data: statusEvent(id, 'running', 'claimed by a worker', { attempt: run.attempt, worker: worker.id }),
    });
    return run;
  });
}

/** Records the backend the training process actually chose. Fenced. */
export async function setRunBackend(
  db: Db,
  id: string,
  attempt: number,
  backend: string,
  device: string,
): Promise<void> {
  const r = await db.prisma.run.updateMany({
    where: { id, attempt, status: 'running' },
    data: { backend, device },
  });
  if (r.count === 0) throw new FencedOutError(id, attempt, 'backend');
}

export async function updateProgress(
  db: Db,
  id: string,
  attempt: number,
  p: { epoch: number; step: number; totalSteps: number },
): Promise<{ cancelRequested: boolean }> {
  const r = await db.prisma.run.updateMany({
    where: { id, attempt, status: 'running' },
    data: { epoch: p.epoch, step: p.step, totalSteps: p.totalSteps },
  });
  if (r.count === 0) throw new FencedOutError(id, attempt, 'progress');
  const run = await db.prisma.run.findUnique({ where: { id }, select: { cancelRequestedAt: true } });
  return { cancelRequested: run?.cancelRequestedAt != null };
}

/** Ends a run. Fenced: only the attempt that holds the run can end it. */
export async function finishRun(
  db: Db,
  id: string,
  attempt: number,
  outcome:
    | { status: 'succeeded'; summary: RunSummary }
    | { status: 'failed'; error: RunError }
    | { status: 'canceled'; reason: string },
): Promise<Run> {
  return db.prisma.$transaction(async (tx) => {
    const data: Prisma.RunUpdateManyMutationInput = { status: outcome.status, finishedAt: new Date() };
    if (outcome.status === 'succeeded') data.summary = outcome.summary as unknown as Prisma.InputJsonValue;
    if (outcome.status === 'failed') data.error = outcome.error as unknown as Prisma.InputJsonValue;
    const r = await tx.run.updateMany({ where: { id, attempt, status: 'running' }, data });
    if (r.count === 0) throw new FencedOutError(id, attempt, `final status ${outcome.status}`);
    const reason =
      outcome.status === 'succeeded'
        ? 'training finished'
        : outcome.status === 'failed'
          ? outcome.error.message
          : outcome.reason;
    const extra = outcome.status === 'failed' ? { code: outcome.error.code } : {};
    await tx.runEvent.create({ data: statusEvent(id, outcome.status, reason, { attempt, ...extra }) });
    return tx.run.findUniqueOrThrow({ where: { id } });
  });
}

/** Fails a run that no worker holds (e.g. it cannot be enqueued). */
export async function failUnclaimedRun(db: Db, id: string, error: RunError): Promise<void> {
  await db.prisma.$transaction(async (tx) => {
    const r = await tx.run.updateMany({
      where: { id, status: 'queued' },
      data: { status: 'failed', finishedAt: new Date(), error: error as unknown as Prisma.InputJsonValue },
    });
    if (r.count === 1)
      await tx.runEvent.create({ data: statusEvent(id, 'failed', error.message, { code: error.code }) });
  });
}

export async function addRunEvent(
  db: Db,
  runId: string,
  type: string,
  data: Record<string, unknown>,
): Promise<void> {
  await db.prisma.runEvent.create({ data: { runId, type, data: data as Prisma.InputJsonValue } });
}

/**
 * Hands a run back to the queue after its attempt ended without a verdict (the training process
 * died, the worker is shutting down). Fenced: only the attempt that holds it can.
 */
export async function requeueRun(db: Db, id: string, attempt: number, reason: string): Promise<void> {
  await db.prisma.$transaction(async (tx) => {
    const r = await tx.run.updateMany({
      where: { id, attempt, status: 'running' },
      data: { status: 'queued', workerId: null },
    });
    if (r.count === 0) throw new FencedOutError(id, attempt, 'requeue');
    await tx.runEvent.create({ data: statusEvent(id, 'queued', reason, { attempt }) });
  });
}
