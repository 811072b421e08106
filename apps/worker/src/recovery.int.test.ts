import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RetortClient } from '@retort/client';
import { migrate } from '@retort/db';
import {
  fashionMnistData,
  freePort,
  type LocalServer,
  type RetortStack,
  startLocalPostgres,
  startLocalRedis,
  startRetort,
} from '@retort/devstack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Redis and then Postgres go away and come back under a running API and worker: both serve again,
 * the same processes, and a run submitted while Redis was down is trained once it is back.
 */
describe('the service recovers by itself when Redis or Postgres returns', { timeout: 180_000 }, () => {
  const pgDir = mkdtempSync(path.join(tmpdir(), 'retort-recovery-pg-'));
  const redisDir = mkdtempSync(path.join(tmpdir(), 'retort-recovery-redis-'));
  let pgPort: number;
  let redisPort: number;
  let pg: LocalServer;
  let redis: LocalServer;
  let stack: RetortStack;
  let client: RetortClient;
  const spec = (name: string) => ({
    name,
    kind: 'train',
    student: { preset: 'mlp', hidden: [8] },
    data: fashionMnistData(200, 100),
    training: { epochs: 1, batchSize: 50 },
  });
  const trains = async (name: string) => {
    const { run } = await client.submit(spec(name));
    return (await client.wait(run.id, { intervalMs: 200, timeoutMs: 90_000 })).status;
  };

  beforeAll(async () => {
    pgPort = await freePort();
    redisPort = await freePort();
    pg = await startLocalPostgres({ dir: pgDir, port: pgPort, durable: false });
    redis = await startLocalRedis({ dir: redisDir, port: redisPort, durable: false });
    await migrate(pg.url);
    stack = await startRetort({
      databaseUrl: pg.url,
      redisUrl: redis.url,
      dataRoots: ['/usr/share/datasets'],
      logDir: path.join(tmpdir(), `retort-recovery-${process.pid}`),
      env: { RETORT_RECONCILE_MS: '1000', RETORT_HEARTBEAT_MS: '500', LOG_LEVEL: 'warn' },
    });
    client = new RetortClient(stack.baseUrl, stack.adminKey);
    expect(await trains('before')).toBe('succeeded');
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
    await redis?.stop();
    await pg?.stop();
  });

  it('Redis down, then back (empty): a run submitted meanwhile is trained, by the same processes', async () => {
    const pids = [stack.api.pid, ...stack.workers.map((w) => w.pid)];
    await redis.stop();
    const { run } = await client.submit(spec('while Redis was down')); // 201: recorded, queued later
    await new Promise((r) => setTimeout(r, 2000));
    redis = await startLocalRedis({ dir: redisDir, port: redisPort, durable: false });
    // Nothing re-queued it by hand: the reconciler found a queued run without a queue entry.
    expect((await client.wait(run.id, { intervalMs: 200, timeoutMs: 90_000 })).status).toBe('succeeded');
    expect(await trains('after Redis came back')).toBe('succeeded');
    expect([stack.api.pid, ...stack.workers.map((w) => w.pid)]).toEqual(pids);
    expect([stack.api, ...stack.workers].every((p) => p.exitCode === null)).toBe(true);
  });

  it('Postgres down, then back: the same processes serve and train again', async () => {
    const pids = [stack.api.pid, ...stack.workers.map((w) => w.pid)];
    await pg.stop();
    const down = await fetch(`${stack.baseUrl}/v1/runs`, { headers: client.authHeaders() });
    expect(down.status).toBe(503);
    await new Promise((r) => setTimeout(r, 2000));
    pg = await startLocalPostgres({ dir: pgDir, port: pgPort, durable: false });
    await expect
      .poll(async () => (await fetch(`${stack.baseUrl}/readyz`)).status, { timeout: 20_000 })
      .toBe(200);
    expect(await trains('after Postgres came back')).toBe('succeeded');
    expect([stack.api.pid, ...stack.workers.map((w) => w.pid)]).toEqual(pids);
    expect([stack.api, ...stack.workers].every((p) => p.exitCode === null)).toBe(true);
  });
});
