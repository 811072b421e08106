import { activeRuns, type Db, listLiveWorkers, redispatchQueued, requeueAbandoned } from '@retort/db';
import { LIVE_JOB_STATES, type RunProducer } from '@retort/queue';
import type { Logger } from 'pino';

// Any constant; only one reconciler in the cluster acts at a time.
const RECONCILER_LOCK = 72_201_912;

/**
 * Postgres is the truth, Redis the transport. The reconciler finds runs that Postgres says are
 * queued or running but that no queue entry or live worker backs (Redis restarted empty, a job
 * removed by hand, a worker gone without a word) and dispatches them again. One instance acts at a
 * time (an advisory lock); a new dispatch has its own queue entry id, and a worker claims a run only
 * for its current dispatch, so a run is never dispatched twice at once.
 */
export class Reconciler {
  constructor(private readonly o: { db: Db; producer: RunProducer; workerStaleMs: number; log: Logger }) {}

  async runOnce(): Promise<{ enqueued: string[]; requeued: string[] }> {
    const out = { enqueued: [] as string[], requeued: [] as string[] };
    const client = await this.o.db.pool.connect();
    try {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [
        RECONCILER_LOCK,
      ]);
      if (!rows[0]?.ok) return out;
      try {
        await this.reconcile(out);
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [RECONCILER_LOCK]);
      }
    } finally {
      client.release();
    }
    return out;
  }

  private async reconcile(out: { enqueued: string[]; requeued: string[] }): Promise<void> {
    const { db, producer, log } = this.o;
    const live = new Set((await listLiveWorkers(db, this.o.workerStaleMs)).map((w) => w.id));
    for (const run of await activeRuns(db)) {
      const state = await producer.jobState(run.pool, run.id, run.dispatch);
      const backed = (LIVE_JOB_STATES as readonly string[]).includes(state);
      if (run.status === 'queued') {
        if (backed) continue;
        let dispatch = run.dispatch;
        if (state !== 'missing') {
          // The entry ended without the run leaving the queue: it needs a new one.
          const r = await redispatchQueued(db, run.id, run.dispatch, `queue entry ${state}`);
          if (!r) continue;
          dispatch = r.dispatch;
        }
        await producer.enqueue({ runId: run.id, dispatch, pool: run.pool, priority: run.priority });
        log.warn({ runId: run.id, dispatch, entry: state }, 'queued run had no queue entry; enqueued it');
        out.enqueued.push(run.id);
      } else if (run.status === 'running') {
        if ((run.workerId && live.has(run.workerId)) || backed) continue;
        const r = await requeueAbandoned(
          db,
          run.id,
          run.attempt,
          'its worker is gone and no queue entry backs it',
        );
        if (r?.status !== 'queued') continue;
        await producer.enqueue({ runId: r.id, dispatch: r.dispatch, pool: r.pool, priority: r.priority });
        log.warn(
          { runId: r.id, dispatch: r.dispatch, worker: run.workerId },
          'running run had lost its worker; back on the queue',
        );
        out.requeued.push(r.id);
      }
    }
  }
}
