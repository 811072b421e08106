import { createRun, type Db, getRunById, type RunRow, type Transition } from '@retort/db';
import type { RunProducer } from '@retort/queue';
import { checkSpecUris, type ErrorDetail, RetortError, type RunSpec, type UriPolicy } from '@retort/spec';

export interface SubmitDeps {
  db: Db;
  producer: RunProducer;
  policy: UriPolicy;
  checkUris: boolean;
  log?: { warn(obj: object, msg: string): void };
}

/** Problems a spec can only have in the context of this server: URIs, teacher runs. */
export async function contextProblems(
  deps: SubmitDeps,
  teamId: string,
  spec: RunSpec,
  checkUris: boolean,
): Promise<ErrorDetail[]> {
  const problems: ErrorDetail[] = checkUris ? await checkSpecUris(spec, deps.policy) : [];
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
  teamId: string,
  spec: RunSpec,
  idempotencyKey: string | undefined,
): Promise<{ run: RunRow; created: boolean }> {
  const problems = await contextProblems(deps, teamId, spec, deps.checkUris);
  if (problems.length > 0) {
    throw new RetortError(
      'RETORT_SPEC_INVALID',
      `The run spec has ${problems.length} problem${problems.length === 1 ? '' : 's'}.`,
      problems,
    );
  }
  const { run, created } = await createRun(deps.db, { teamId, spec, idempotencyKey });
  if (!created) return { run, created };
  // Postgres holds the run now; if Redis cannot take the queue entry, the reconciler adds it later.
  await deps.producer
    .enqueue({ runId: run.id, dispatch: run.dispatch, pool: spec.resources.pool, priority: spec.priority })
    .catch((e) =>
      deps.log?.warn({ runId: run.id, err: String(e) }, 'could not enqueue; the reconciler will'),
    );
  return { run, created };
}

/** Carries out what a lifecycle transition asks of the queue: remove, add, or signal the worker. */
export async function applyTransition(
  deps: SubmitDeps,
  t: Transition,
  signal: 'cancel' | 'pause',
): Promise<void> {
  const { run } = t;
  if (t.dequeue) await deps.producer.removeQueued(run.pool, run.id, run.dispatch).catch(() => false);
  if (t.enqueue) {
    await deps.producer
      .enqueue({ runId: run.id, dispatch: run.dispatch, pool: run.pool, priority: run.priority })
      .catch((e) =>
        deps.log?.warn({ runId: run.id, err: String(e) }, 'could not enqueue; the reconciler will'),
      );
  }
  if (t.signalWorker) await deps.producer.sendControl({ type: signal, runId: run.id }).catch(() => {});
}
