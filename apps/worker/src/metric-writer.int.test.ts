import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bootstrapAdmin, claimRun, createDb, createRun, type Db, getSeries, migrate } from '@retort/db';
import { freePort, freshDatabase, type LocalServer, startLocalPostgres } from '@retort/devstack';
import { parseSpec } from '@retort/spec';
import { pino } from 'pino';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { MetricWriter } from './metric-writer.js';
import { duringOutage, isOutage } from './outage.js';

const spec = parseSpec({
  kind: 'train',
  student: { preset: 'mlp' },
  data: { train: { format: 'idx', images: 'file:///x', labels: 'file:///y' } },
});
const worker = { id: 'w', backend: 'wasm', device: 'cpu' };

async function runningRun(db: Db) {
  const { teamId } = await bootstrapAdmin(db, randomBytes(16).toString('hex'));
  const { run } = await createRun(db, { teamId, spec });
  return (await claimRun(db, run.id, 1, worker)).run!;
}

describe('MetricWriter', () => {
  const closers: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('writes in batches, not once per point', async () => {
    const url = await freshDatabase(inject('postgresServerUrl'), 'metric_batches');
    await migrate(url);
    const db = createDb(url, { max: 2 });
    closers.push(() => db.close());
    const run = await runningRun(db);
    let statements = 0;
    const query = db.pool.query.bind(db.pool);
    db.pool.query = ((...args: Parameters<typeof query>) => {
      if (String(args[0]).includes('INSERT INTO metric_points')) statements++;
      return query(...args);
    }) as typeof query;
    const w = new MetricWriter(db, run.id, run.attempt, {
      intervalMs: 60_000,
      maxPoints: 100,
      onError: () => {},
    });
    // 250 steps' points arriving 25 at a time, as the training process sends them.
    for (let step = 1; step <= 250; step += 25) {
      w.add(Array.from({ length: 25 }, (_, i) => ({ name: 'loss', step: step + i, value: step + i })));
      await new Promise((r) => setImmediate(r));
    }
    await w.drain();
    expect(statements).toBeGreaterThan(0);
    expect(statements).toBeLessThanOrEqual(3); // a statement per 100 points at most, not one per point
    expect((await getSeries(db, run.id, { limit: 100_000 })).series[0]!.points).toHaveLength(250);
  });

  it('keeps points while Postgres is down and writes them all when it is back', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'retort-pgdown-'));
    const port = await freePort();
    let pg: LocalServer = await startLocalPostgres({ dir, port, durable: false });
    closers.push(() => pg.stop());
    await migrate(pg.url);
    const db = createDb(pg.url, { max: 2 });
    closers.push(() => db.close());
    const run = await runningRun(db);
    const errors: unknown[] = [];
    const w = new MetricWriter(db, run.id, run.attempt, { intervalMs: 50, onError: (e) => errors.push(e) });
    w.add([{ name: 'loss', step: 1, value: 1 }]);
    await w.flush();
    await pg.stop();
    for (let step = 2; step <= 20; step++) w.add([{ name: 'loss', step, value: step }]);
    await w.flush();
    expect(errors.length).toBeGreaterThan(0);
    // What drain throws is the outage itself, so a checkpoint waits for Postgres (duringOutage)
    // however long it is away, instead of failing the run on an error it does not know.
    const failure = await w.drain().then(
      () => null,
      (e: unknown) => e,
    );
    expect(failure).not.toBeNull();
    expect(isOutage(failure)).toBe(true);
    const draining = duringOutage(() => w.drain(), pino({ level: 'silent' }));
    await new Promise((r) => setTimeout(r, 1500));
    pg = await startLocalPostgres({ dir, port, durable: false });
    await draining;
    w.close();
    const points = (await getSeries(db, run.id, { limit: 100_000 })).series[0]!.points;
    expect(points.map(([s]) => s)).toEqual([...Array(20).keys()].map((i) => i + 1));
  });
});
