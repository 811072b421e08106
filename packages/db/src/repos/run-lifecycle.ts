import { RetortError, type RunError, type RunStatus, type RunSummary } from '@retort/spec';
import { type Db, FencedOutError } from '../client.js';
import { Prisma, type Run } from '../generated/prisma/client.js';
import { statusEvent } from './runs.js';

/**
 * The run state machine. Postgres holds the truth; every transition is one transaction with a
 * status event (timestamp and reason). Transitions made by a worker are fenced by its attempt.
 *
 *   queued  → running (claim) · paused (pause) · canceled (cancel)
 *   running → succeeded · failed · canceled · paused (after a checkpoint) · queued (handed back, lost)
 *   paused  → queued (resume) · canceled
 *   failed  → queued (retry, from the last checkpoint)
 */

type Tx = Prisma.TransactionClient;

async function lockRun(tx: Tx, id: string, teamId?: string): Promise<Run> {
  // FOR UPDATE serialises transitions of one run; other runs are not held up.
  const rows = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM runs WHERE id = ${id}::uuid FOR UPDATE`;
  const run = rows.length ? await tx.run.findUnique({ where: { id } }) : null;
  if (!run || (teamId && run.teamId !== teamId))
    throw new RetortError('RETORT_RUN_NOT_FOUND', `run ${id} not found`);
  return run;
}

function conflict(run: Run, action: string, allowed: RunStatus[]): RetortError {
  return new RetortError(
    'RETORT_INVALID_TRANSITION',
    `run ${run.id} is ${run.status}; only ${allowed.join(' or ')} runs can be ${action}`,
  );
}

/** What a user-initiated transition did: the run as it is now, and whether a worker must be told. */
export interface Transition {
  run: Run;
  /** The run is running: its worker has been asked (via the flag) and should be signalled. */
  signalWorker: boolean;
  /** The run left the queue: the queue entry of `run.dispatch` should be removed. */
  dequeue: boolean;
  /** The run went (back) on the queue: enqueue dispatch `run.dispatch`. */
  enqueue: boolean;
}

const none = { signalWorker: false, dequeue: false, enqueue: false };

export async function requestCancel(db: Db, teamId: string, id: string): Promise<Transition> {
  return db.prisma.$transaction(async (tx) => {
    const run = await lockRun(tx, id, teamId);
    const now = new Date();
    if (run.status === 'queued' || run.status === 'paused') {
      const updated = await tx.run.update({
        where: { id },
        data: { status: 'canceled', finishedAt: now, cancelRequestedAt: now },
      });
      await tx.runEvent.create({
        data: statusEvent(id, 'canceled', `canceled by request while ${run.status}`),
      });
      return { ...none, run: updated, dequeue: run.status === 'queued' };
    }
    if (run.status === 'running') {
      if (run.cancelRequestedAt) return { ...none, run, signalWorker: true };
      const updated = await tx.run.update({ where: { id }, data: { cancelRequestedAt: now } });
      await tx.runEvent.create({
        data: {
          runId: id,
          type: 'cancel-requested',
          data: { reason: 'canceled by request; stops before its next step' },
        },
      });
      return { ...none, run: updated, signalWorker: true };
    }
    throw conflict(run, 'canceled', ['queued', 'running', 'paused']);
  });
}

export async function requestPause(db: Db, teamId: string, id: string): Promise<Transition> {
  return db.prisma.$transaction(async (tx) => {
    const run = await lockRun(tx, id, teamId);
    if (run.status === 'paused') return { ...none, run };
    if (run.status === 'queued') {
      const updated = await tx.run.update({
        where: { id },
        data: { status: 'paused', pauseRequestedAt: null },
      });
      await tx.runEvent.create({ data: statusEvent(id, 'paused', 'paused by request before it started') });
      return { ...none, run: updated, dequeue: true };
    }
    if (run.status === 'running') {
      if (run.cancelRequestedAt)
        throw new RetortError('RETORT_INVALID_TRANSITION', `run ${id} is being canceled`);
      if (run.pauseRequestedAt) return { ...none, run, signalWorker: true };
      const updated = await tx.run.update({ where: { id }, data: { pauseRequestedAt: new Date() } });
      await tx.runEvent.create({
        data: {
          runId: id,
          type: 'pause-requested',
          data: { reason: 'checkpoints at its next step, then leaves the worker' },
        },
      });
      return { ...none, run: updated, signalWorker: true };
    }
    throw conflict(run, 'paused', ['queued', 'running']);
  });
}

export async function resumeRun(db: Db, teamId: string, id: string): Promise<Transition> {
  return db.prisma.$transaction(async (tx) => {
    const run = await lockRun(tx, id, teamId);
    if (run.status !== 'paused') throw conflict(run, 'resumed', ['paused']);
    const updated = await tx.run.update({
      where: { id },
      data: { status: 'queued', dispatch: { increment: 1 }, pauseRequestedAt: null },
    });
    await tx.runEvent.create({
      data: statusEvent(id, 'queued', 'resumed by request; continues from its checkpoint'),
    });
    return { ...none, run: updated, enqueue: true };
  });
}

export async function retryRun(db: Db, teamId: string, id: string): Promise<Transition> {
  return db.prisma.$transaction(async (tx) => {
    const run = await lockRun(tx, id, teamId);
    if (run.status !== 'failed') throw conflict(run, 'retried', ['failed']);
    const updated = await tx.run.update({
      where: { id },
      data: {
        status: 'queued',
        dispatch: { increment: 1 },
        retries: 0,
        error: Prisma.DbNull,
        finishedAt: null,
      },
    });
    await tx.runEvent.create({
      data: statusEvent(id, 'queued', 'retried by request; continues from its last checkpoint'),
    });
    return { ...none, run: updated, enqueue: true };
  });
}

export interface ClaimResult {
  run: Run | null;
  /** Why the run was not claimed, for the log. */
  reason?: string;
}

/**
 * A worker takes a run for the queue entry `dispatch`. The attempt (the fencing token) goes up by
 * one. A run found `running` lost its previous worker: that counts as a retry, and at
 * `training.maxAttempts` the run fails instead of starting again.
 */
export async function claimRun(
  db: Db,
  id: string,
  dispatch: number,
  worker: { id: string; backend: string; device: string },
): Promise<ClaimResult> {
  return db.prisma.$transaction(async (tx) => {
    const run = await lockRun(tx, id).catch(() => null);
    if (!run) return { run: null, reason: 'no such run' };
    if (run.dispatch !== dispatch)
      return { run: null, reason: `stale queue entry (dispatch ${dispatch}, run is at ${run.dispatch})` };
    if (run.status !== 'queued' && run.status !== 'running')
      return { run: null, reason: `run is ${run.status}` };
    if (run.cancelRequestedAt || run.pauseRequestedAt)
      return { run: null, reason: 'a cancel or pause is pending' };
    const lost = run.status === 'running';
    const retries = run.retries + (lost ? 1 : 0);
    const maxAttempts = (run.spec as { training?: { maxAttempts?: number } }).training?.maxAttempts ?? 3;
    if (retries >= maxAttempts) {
      const error: RunError = {
        code: 'RETORT_WORKER_LOST',
        message: `the run lost its worker or training process ${retries} times (training.maxAttempts is ${maxAttempts})`,
      };
      await tx.run.update({
        where: { id },
        data: {
          status: 'failed',
          finishedAt: new Date(),
          retries,
          error: error as unknown as Prisma.InputJsonValue,
        },
      });
      await tx.runEvent.create({ data: statusEvent(id, 'failed', error.message, { code: error.code }) });
      return { run: null, reason: `failed: ${error.message}` };
    }
    const claimed = await tx.run.update({
      where: { id },
      data: {
        status: 'running',
        attempt: { increment: 1 },
        retries,
        workerId: worker.id,
        backend: worker.backend,
        device: worker.device,
        ...(run.startedAt ? {} : { startedAt: new Date() }),
      },
    });
    const reason = lost
      ? `claimed by a worker after attempt ${run.attempt} lost its own`
      : 'claimed by a worker';
    await tx.runEvent.create({
      data: statusEvent(id, 'running', reason, { attempt: claimed.attempt, worker: worker.id }),
    });
    return { run: claimed };
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
): Promise<{ cancelRequested: boolean; pauseRequested: boolean }> {
  const rows = await db.pool.query<{ cancel: boolean; pause: boolean }>(
    `UPDATE runs SET epoch = $3, step = $4, total_steps = $5, updated_at = now()
      WHERE id = $1 AND attempt = $2 AND status = 'running'
      RETURNING cancel_requested_at IS NOT NULL AS cancel, pause_requested_at IS NOT NULL AS pause`,
    [id, attempt, p.epoch, p.step, p.totalSteps],
  );
  const r = rows.rows[0];
  if (!r) throw new FencedOutError(id, attempt, 'progress');
  return { cancelRequested: r.cancel, pauseRequested: r.pause };
}

type Outcome =
  | { status: 'succeeded'; summary: RunSummary }
  | { status: 'failed'; error: RunError }
  | { status: 'canceled'; reason: string }
  | { status: 'paused'; reason: string };

/** Ends an attempt with a verdict (or a pause). Fenced: only the attempt that holds the run can. */
export async function finishRun(db: Db, id: string, attempt: number, outcome: Outcome): Promise<Run> {
  return db.prisma.$transaction(async (tx) => {
    const data: Prisma.RunUpdateManyMutationInput = { status: outcome.status };
    if (outcome.status === 'paused') Object.assign(data, { workerId: null, pauseRequestedAt: null });
    else data.finishedAt = new Date();
    if (outcome.status === 'succeeded') data.summary = outcome.summary as unknown as Prisma.InputJsonValue;
    if (outcome.status === 'failed') data.error = outcome.error as unknown as Prisma.InputJsonValue;
    const r = await tx.run.updateMany({ where: { id, attempt, status: 'running' }, data });
    if (r.count === 0) throw new FencedOutError(id, attempt, `status ${outcome.status}`);
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

/**
 * Hands a run back to the queue as a new dispatch, from a worker that holds it (fenced by attempt).
 * `lost: true` (the attempt crashed) counts a retry; at training.maxAttempts the run fails instead.
 * Returns the run, queued (enqueue its dispatch) or failed.
 */
export async function requeueRun(
  db: Db,
  id: string,
  attempt: number,
  reason: string,
  opts: { lost: boolean; error?: RunError },
): Promise<Run> {
  return db.prisma.$transaction(async (tx) => {
    const run = await lockRun(tx, id);
    if (run.attempt !== attempt || run.status !== 'running') throw new FencedOutError(id, attempt, 'requeue');
    return backToQueue(tx, run, reason, opts);
  });
}

async function backToQueue(
  tx: Tx,
  run: Run,
  reason: string,
  opts: { lost: boolean; error?: RunError },
): Promise<Run> {
  const retries = run.retries + (opts.lost ? 1 : 0);
  const maxAttempts = (run.spec as { training?: { maxAttempts?: number } }).training?.maxAttempts ?? 3;
  if (retries >= maxAttempts) {
    const error = {
      code: opts.error?.code ?? 'RETORT_WORKER_LOST',
      message: `${opts.error?.message ?? reason} (attempt ${retries} of ${maxAttempts}; no more retries)`,
    };
    const failed = await tx.run.update({
      where: { id: run.id },
      data: {
        status: 'failed',
        finishedAt: new Date(),
        retries,
        workerId: null,
        error: error as unknown as Prisma.InputJsonValue,
      },
    });
    await tx.runEvent.create({
      data: statusEvent(run.id, 'failed', error.message, { code: error.code, attempt: run.attempt }),
    });
    return failed;
  }
  const queued = await tx.run.update({
    where: { id: run.id },
    data: { status: 'queued', workerId: null, retries, dispatch: { increment: 1 } },
  });
  await tx.runEvent.create({
    data: statusEvent(run.id, 'queued', reason, { attempt: run.attempt, retries }),
  });
  return queued;
}

/** Runs Postgres says are queued or running, for the reconciler. */
export async function activeRuns(db: Db): Promise<Run[]> {
  return db.prisma.run.findMany({
    where: { status: { in: ['queued', 'running'] } },
    orderBy: { createdAt: 'asc' },
  });
}

/**
 * The reconciler's hand-back of a running run whose worker is gone and which no queue entry
 * backs: fenced on the attempt it saw, so a worker that claims it meanwhile wins.
 */
export async function requeueAbandoned(
  db: Db,
  id: string,
  attempt: number,
  reason: string,
): Promise<Run | null> {
  return db.prisma.$transaction(async (tx) => {
    const run = await lockRun(tx, id).catch(() => null);
    if (run?.status !== 'running' || run.attempt !== attempt) return null;
    return backToQueue(tx, run, reason, { lost: true });
  });
}

/** A queued run whose queue entry is gone and cannot be re-added as it was: a new dispatch. */
export async function redispatchQueued(
  db: Db,
  id: string,
  dispatch: number,
  reason: string,
): Promise<Run | null> {
  return db.prisma.$transaction(async (tx) => {
    const run = await lockRun(tx, id).catch(() => null);
    if (run?.status !== 'queued' || run.dispatch !== dispatch) return null;
    const updated = await tx.run.update({ where: { id }, data: { dispatch: { increment: 1 } } });
    await tx.runEvent.create({
      data: { runId: id, type: 'redispatched', data: { reason, dispatch: updated.dispatch } },
    });
    return updated;
  });
}
