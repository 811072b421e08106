import type { MetricSeries } from '@retort/spec';
import { type Db, FencedOutError } from '../client.js';

export interface MetricPointInput {
  name: string;
  step: number;
  value: number;
}

/**
 * Writes a batch of metric points in one statement, only while `attempt` holds the run (fencing).
 * A point at a step that already has a value replaces it, so steps replayed after a resume are
 * rewritten, not doubled.
 */
export async function writeMetrics(
  db: Db,
  runId: string,
  attempt: number,
  points: MetricPointInput[],
): Promise<void> {
  if (points.length === 0) return;
  // ON CONFLICT cannot touch one row twice in a statement: keep the last value per (name, step).
  const latest = new Map<string, MetricPointInput>();
  for (const p of points) latest.set(`${p.name}\u0000${p.step}`, p);
  const rows = [...latest.values()];
  // One statement: the points, and a `metrics` run event naming them (for live event streams).
  const res = await db.pool.query(
    `WITH ins AS (
       INSERT INTO metric_points (run_id, name, step, value)
       SELECT $1, t.name, t.step, t.value
         FROM unnest($3::text[], $4::int[], $5::float8[]) AS t(name, step, value)
        WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1 AND attempt = $2 AND status = 'running')
       ON CONFLICT (run_id, name, step) DO UPDATE SET value = EXCLUDED.value, created_at = now()
       RETURNING name, step
     )
     INSERT INTO run_events (run_id, type, data)
     SELECT $1, 'metrics', jsonb_build_object(
              'count', count(*), 'fromStep', min(step), 'toStep', max(step),
              'names', jsonb_agg(DISTINCT name))
       FROM ins
     HAVING count(*) > 0`,
    [runId, attempt, rows.map((r) => r.name), rows.map((r) => r.step), rows.map((r) => r.value)],
  );
  if (res.rowCount === 0) throw new FencedOutError(runId, attempt, `${rows.length} metric points`);
}

/** The points a `metrics` run event names. */
export async function pointsOf(
  db: Db,
  runId: string,
  e: { fromStep: number; toStep: number; names: string[] },
): Promise<{ name: string; step: number; value: number }[]> {
  const { rows } = await db.pool.query<{ name: string; step: number; value: number }>(
    `SELECT name, step, value FROM metric_points
      WHERE run_id = $1 AND step BETWEEN $2 AND $3 AND name = ANY($4::text[])
      ORDER BY step, name`,
    [runId, e.fromStep, e.toStep, e.names],
  );
  return rows;
}

export interface SeriesQuery {
  names?: string[] | undefined;
  fromStep?: number | undefined;
  /** When a series has more points, consecutive points are averaged into this many buckets. */
  maxPoints?: number | undefined;
  /** Without `maxPoints`: at most this many points per series, from `fromStep` on; the rest by paging. */
  limit: number;
}

/**
 * Metric series of a run, by step. With `maxPoints`, a longer series is cut into that many buckets
 * of consecutive points; each bucket answers with its last step and the mean of its values.
 * Without it, each series answers at most `limit` points and says where the next page starts, so
 * a read never loads a whole long series.
 */
export async function getSeries(db: Db, runId: string, q: SeriesQuery): Promise<MetricSeries> {
  const names = q.names?.length ? q.names : null;
  const fromStep = q.fromStep ?? 0;
  const { rows } =
    q.maxPoints !== undefined
      ? await db.pool.query<{ name: string; step: number; value: number }>(
          `WITH pts AS (
             SELECT name, step, value,
                    count(*) OVER (PARTITION BY name) AS n,
                    row_number() OVER (PARTITION BY name ORDER BY step) - 1 AS i
               FROM metric_points
              WHERE run_id = $1
                AND ($2::text[] IS NULL OR name = ANY($2))
                AND step >= $3)
           SELECT name, max(step) AS step, avg(value) AS value
             FROM pts
            GROUP BY name, CASE WHEN n <= $4 THEN i ELSE floor(i * $4::float8 / n) END
            ORDER BY name, max(step)`,
          [runId, names, fromStep, q.maxPoints],
        )
      : await db.pool.query<{ name: string; step: number; value: number }>(
          // One more than the limit, to know whether there is a next page.
          `SELECT name, step, value FROM (
             SELECT name, step, value, row_number() OVER (PARTITION BY name ORDER BY step) AS i
               FROM metric_points
              WHERE run_id = $1
                AND ($2::text[] IS NULL OR name = ANY($2))
                AND step >= $3) pts
            WHERE i <= $4 + 1
            ORDER BY name, step`,
          [runId, names, fromStep, q.limit],
        );
  const byName = new Map<string, [number, number][]>();
  for (const r of rows) {
    const pts = byName.get(r.name) ?? [];
    byName.set(r.name, pts);
    pts.push([Number(r.step), Number(r.value)]);
  }
  const order = q.names?.length ? q.names.filter((n) => byName.has(n)) : [...byName.keys()];
  return {
    series: order.map((name) => {
      const points = byName.get(name) ?? [];
      if (q.maxPoints === undefined && points.length > q.limit) {
        const next = points[q.limit]![0];
        return { name, points: points.slice(0, q.limit), nextFromStep: next };
      }
      return { name, points };
    }),
  };
}
