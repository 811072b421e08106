import { createRun, type Db, getRunById, type RunRow, type Transition } from '@retort/db';
import type { RunProducer } from '@retort/queue';
import { type ErrorDetail, RetortError, type RunSpec } from '@retort/spec';
import { checkSpecUris, policyForTeam, type UriPolicy } from '@retort/uri-policy';
import { withDeadline } from './deadline.js';

export interface SubmitDeps {
  db: Db;
  producer: RunProducer;
  /** The server's policy; each team's runs are held to the team's data roots within it. */
  policy: UriPolicy;
  checkUris: boolean;
  /** Queue calls that take longer are left to the reconciler (the run is in Postgres already). */
  redisTimeoutMs: number;
  log?: { warn(obj: object, msg: string): void };
}

/** Who submits: the team, and the data roots its runs are held to (null: all of the server's). */
export interface Submitter {
  teamId: string;
  dataRoots: string[] | null;
}

/** Problems a spec can only have in the context of this server: URIs, teacher runs. */
export async function contextProblems(
  deps: SubmitDeps,
  team: Submitter,
  spec: RunSpec,
  checkUris: boolean,
): Promise<ErrorDetail[]> {
  const teamId = team.teamId;
  const problems: ErrorDetail[] = checkUris
    ? await checkSpecUris(spec, policyForTeam(deps.policy, team.dataRoots))
    : [];
  const runTeachers = [
    ...(spec.teacher && 'run' in spec.teacher ? [{ path: '/teacher/run', id: spec.teacher.run }] : []),
    ...(spec.teachers ?? []).flatMap((t, i) =>
      'run' in t ? [{ path: `/teachers/${i}/run`, id: t.run }] : [],
    ),
  ];
  for (const { path, id } of runTeachers) {
    const t = await getRunById(deps.db, id);
    if (!t || t.teamId !== teamId) problems.push({ path, message: 'no run with this id' });
    else if (t.status !== 'succeeded') {
      problems.push({
        path,
        message: `run is ${t.status}; a teacher run must have succeeded (submit once it has)`,
      });
    }
  }
  return problems;
}

/**
 * Submits a validated spec: checks what only this server can check, records the run and enqueues
 * it. With an idempotency key, a repeat returns the first run and enqueues nothing.
 */
export async function submitRun(
  deps: SubmitDeps,
  team: Submitter,
  spec: RunSpec,
  idempotencyKey: string | undefined,
): Promise<{ run: RunRow; created: boolean }> {
  const teamId = team.teamId;
  const problems = await contextProblems(deps, team, spec, deps.checkUris);
  if (problems.length > 0) {
    throw new RetortError(
      'RETORT_SPEC_INVALID',
      `The run spec has ${problems.length} problem${problems.length === 1 ? '' : 's'}.`,
      problems,
    );
  }
  const { run, created } = await createRun(deps.db, { teamId, spec, idempotencyKey });
  if (!created) return { run, created };
  // Postgres holds the run now; if Redis cannot take the queue entry (down, or slow), the
  // reconciler adds it later, so the answer is 201 either way.
  await enqueue(deps, {
    runId: run.id,
    dispatch: run.dispatch,
    pool: spec.resources.pool,
    priority: spec.priority,
  });
  return { run, created };
}

/** Carries out what a lifecycle transition asks of the queue: remove, add, or signal the worker. */
export async function applyTransition(
  deps: SubmitDeps,
  t: Transition,
  signal: 'cancel' | 'pause',
): Promise<void> {
  const { run } = t;
  const ms = deps.redisTimeoutMs;
  // A stale queue entry is harmless (its dispatch no longer matches); the worker also reads the
  // cancel/pause flag in Postgres at its next progress write if the signal is lost.
  if (t.dequeue)
    await withDeadline(deps.producer.removeQueued(run.pool, run.id, run.dispatch), ms, 'dequeue').catch(
      () => false,
    );
  if (t.enqueue)
    await enqueue(deps, { runId: run.id, dispatch: run.dispatch, pool: run.pool, priority: run.priority });
  if (t.signalWorker)
    await withDeadline(deps.producer.sendControl({ type: signal, runId: run.id }), ms, 'signal').catch(
      () => {},
    );
}

async function enqueue(
  deps: SubmitDeps,
  entry: { runId: string; dispatch: number; pool: string; priority: number },
): Promise<void> {
  await withDeadline(deps.producer.enqueue(entry), deps.redisTimeoutMs, 'enqueue').catch((e) =>
    deps.log?.warn({ runId: entry.runId, err: String(e) }, 'could not enqueue; the reconciler will'),
  );
}
