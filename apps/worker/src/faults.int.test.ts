import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RetortClient, type Run } from '@retort/client';
import { createDb, type Db, migrate } from '@retort/db';
import {
  fashionMnistData,
  freePort,
  freshDatabase,
  type LocalServer,
  type RetortStack,
  startLocalRedis,
  startRetort,
} from '@retort/devstack';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

/**
 * Fault injection with real worker processes: workers killed with SIGKILL mid-run, Redis emptied
 * with FLUSHALL, SIGTERM, pause/resume, and retry. Each ends with the same weights as a run that
 * nothing disturbed.
 */

const FIXTURES = fileURLToPath(new URL('../../../packages/trainer/fixtures/', import.meta.url));
const spec = (name: string, maxAttempts = 5) => ({
  name,
  teacher: { uri: `file://${FIXTURES}fmnist-mlp-teacher.onnx`, format: 'onnx' },
  student: { preset: 'mlp', hidden: [256, 256], dropout: 0.2 },
  data: fashionMnistData(1600, 300),
  training: { epochs: 4, batchSize: 32, seed: 5, checkpointEvery: { steps: 10 }, maxAttempts },
});
const TOTAL_STEPS = 200;

describe('runs survive crashes, restarts and lost queues', { timeout: 180_000 }, () => {
  let redisServer: LocalServer;
  let stack: RetortStack;
  let client: RetortClient;
  let db: Db;
  let expectedHash: string;
  let expectedLoss: [number, number][];

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const until = async (what: string, check: () => Promise<boolean>, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  };
  const weightsHash = async (id: string) =>
    (await client.artifacts(id)).find((a) => a.name === 'weights.bin')!.sha256;
  const loss = async (id: string) => (await client.metrics(id, { names: ['loss'] })).series[0]!.points;
  const row = (id: string) => db.prisma.run.findUniqueOrThrow({ where: { id } });
  const workerPid = async (id: string) => Number((await row(id)).workerId!.split('-').pop());
  const childrenOf = (pid: number): number[] => {
    try {
      return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
        .split('\n')
        .map((s) => Number(s.trim()))
        .filter((n) => n > 0);
    } catch {
      return []; // ps exits 1 when the process has no children
    }
  };
  const statuses = async (id: string) =>
    (await db.prisma.runEvent.findMany({ where: { runId: id, type: 'status' }, orderBy: { id: 'asc' } })).map(
      (e) => (e.data as { status: string }).status,
    );
  const wait = (id: string) => client.wait(id, { intervalMs: 200, timeoutMs: 180_000 });

  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'retort-faults-'));
    // This file empties Redis, so it has a Redis of its own.
    redisServer = await startLocalRedis({
      dir: path.join(dir, 'redis'),
      port: await freePort(),
      durable: false,
    });
    const databaseUrl = await freshDatabase(inject('postgresServerUrl'), 'faults');
    await migrate(databaseUrl);
    db = createDb(databaseUrl, { max: 2 });
    stack = await startRetort({
      databaseUrl,
      redisUrl: redisServer.url,
      dataRoots: ['/usr/share/datasets', FIXTURES],
      workers: 2,
      logDir: path.join(dir, 'logs'),
      env: {
        RETORT_LOCK_MS: '2000',
        RETORT_RECONCILE_MS: '1000',
        RETORT_WORKER_STALE_MS: '2500',
        RETORT_HEARTBEAT_MS: '500',
        RETORT_METRICS_FLUSH_MS: '200',
        // The row's step follows the run closely, so a kill lands near its target.
        RETORT_PROGRESS_WRITE_MS: '100',
        RETORT_SHUTDOWN_GRACE_MS: '15000',
      },
    });
    client = new RetortClient(stack.baseUrl, stack.adminKey);
    const { run } = await client.submit(spec('undisturbed'));
    const done = await wait(run.id);
    expect(done.status).toBe('succeeded');
    expectedHash = await weightsHash(run.id);
    expectedLoss = await loss(run.id);
    expect(expectedLoss.map(([s]) => s)).toEqual([...Array(TOTAL_STEPS).keys()].map((i) => i + 1));
  }, 240_000);

  afterAll(async () => {
    await stack?.stop();
    await db?.close();
    await redisServer?.stop();
  });

  it('finishes a run whose worker is killed (SIGKILL, with its training process) three times, byte-identical', async () => {
    const { run } = await client.submit(spec('killed three times'));
    // Three random points, one in each stretch of the run.
    const targets = [10, 70, 130].map((lo) => lo + Math.floor(Math.random() * 50));
    for (const [i, target] of targets.entries()) {
      await until(`step ${target} of attempt ${i + 1}`, async () => {
        const r = await row(run.id);
        // The training process must be up, so that it is killed too.
        return (
          r.status === 'running' &&
          r.attempt === i + 1 &&
          r.step >= target &&
          r.workerId !== null &&
          childrenOf(Number(r.workerId.split('-').pop())).length > 0
        );
      });
      // Freeze the worker and its training process, then make sure the attempt is still the one in
      // progress: frozen, it cannot finish, so the kill lands mid-run (the run's last steps can go by
      // between a look at the row and a kill; this test once killed a worker just after it had ended
      // the run).
      const pid = await workerPid(run.id);
      const group = [pid, ...childrenOf(pid)];
      for (const p of group) process.kill(p, 'SIGSTOP');
      const frozen = await row(run.id);
      if (!(frozen.status === 'running' && frozen.attempt === i + 1 && frozen.workerId?.endsWith(`-${pid}`)))
        throw new Error(
          `attempt ${i + 1} ended before it could be killed (${frozen.status}, attempt ${frozen.attempt})`,
        );
      for (const p of group) process.kill(p, 'SIGKILL');
      await stack.addWorker(); // keep two
    }
    const done = await wait(run.id);
    expect(done.status).toBe('succeeded');
    expect(done.attempt).toBe(4);
    expect(await weightsHash(run.id)).toBe(expectedHash);
    // Every step once, with the values of the undisturbed run: rewritten after each resume, not doubled.
    expect(await loss(run.id)).toEqual(expectedLoss);
    expect((await row(run.id)).retries).toBe(3);
  });

  it('survives FLUSHALL on Redis in the middle: running runs finish, a queued one is dispatched again', async () => {
    const runs = await Promise.all(
      ['flush-a', 'flush-b', 'flush-c'].map(async (n) => (await client.submit(spec(n))).run),
    );
    await until('two runs training', async () => {
      const rows = await Promise.all(runs.map((r) => row(r.id)));
      return rows.filter((r) => r.status === 'running' && r.step > 5).length === 2;
    });
    const redis = new Redis(redisServer.url);
    await redis.flushall();
    redis.disconnect();
    const done = await Promise.all(runs.map((r) => wait(r.id)));
    expect(done.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    for (const r of done) expect(await weightsHash(r.id)).toBe(expectedHash);
  });

  it('pauses a running run at a checkpoint, frees its worker, and resumes it to the same weights', async () => {
    const { run } = await client.submit(spec('paused'));
    await until('the run to train', async () => (await row(run.id)).step > 30);
    const pausing = await client.run(run.id);
    expect(pausing.status).toBe('running');
    await fetch(`${stack.baseUrl}/v1/runs/${run.id}/pause`, {
      method: 'POST',
      headers: client.authHeaders(),
    });
    await until('paused', async () => (await row(run.id)).status === 'paused');
    const paused = await row(run.id);
    expect(paused.workerId).toBeNull();
    const checkpoints = (await client.artifacts(run.id)).filter((a) => a.kind === 'checkpoint');
    expect(checkpoints.map((c) => c.name)).toContain(`step-${String(paused.step).padStart(9, '0')}`);
    await sleep(500);
    expect((await row(run.id)).step).toBe(paused.step); // nobody trains a paused run
    const resumed = await fetch(`${stack.baseUrl}/v1/runs/${run.id}/resume`, {
      method: 'POST',
      headers: client.authHeaders(),
    });
    expect(((await resumed.json()) as Run).status).toBe('queued');
    const done = await wait(run.id);
    expect(done.status).toBe('succeeded');
    expect(await weightsHash(run.id)).toBe(expectedHash);
    expect(await statuses(run.id)).toEqual(['queued', 'running', 'paused', 'queued', 'running', 'succeeded']);
  });

  it('cancels a paused run', async () => {
    const { run } = await client.submit(spec('paused then canceled'));
    await until('the run to train', async () => (await row(run.id)).step > 5);
    await fetch(`${stack.baseUrl}/v1/runs/${run.id}/pause`, {
      method: 'POST',
      headers: client.authHeaders(),
    });
    await until('paused', async () => (await row(run.id)).status === 'paused');
    const canceled = (await client.cancel(run.id)) as Run;
    expect(canceled.status).toBe('canceled');
    expect(await statuses(run.id)).toEqual(['queued', 'running', 'paused', 'canceled']);
  });

  it('fails a run at its last attempt, and retries it on request from its last checkpoint', async () => {
    const { run } = await client.submit(spec('retried', 1));
    await until('the run to train', async () => (await row(run.id)).step > 40);
    const pid = await workerPid(run.id);
    for (const child of childrenOf(pid)) process.kill(child, 'SIGKILL'); // the training process only
    const failed = await wait(run.id);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ code: 'RETORT_WORKER_LOST' });
    expect(failed.error?.message).toMatch(/no more retries/);
    const retried = await fetch(`${stack.baseUrl}/v1/runs/${run.id}/retry`, {
      method: 'POST',
      headers: client.authHeaders(),
    });
    expect(((await retried.json()) as Run).status).toBe('queued');
    const done = await wait(run.id);
    expect(done.status).toBe('succeeded');
    expect(await weightsHash(run.id)).toBe(expectedHash);
    expect(await statuses(run.id)).toEqual(['queued', 'running', 'failed', 'queued', 'running', 'succeeded']);
  });

  it('hands a run back on SIGTERM, checkpointed, without counting a retry', async () => {
    const { run } = await client.submit(spec('handed back'));
    await until('the run to train', async () => (await row(run.id)).step > 30);
    const pid = await workerPid(run.id);
    process.kill(pid, 'SIGTERM');
    await stack.addWorker();
    const done = await wait(run.id);
    expect(done.status).toBe('succeeded');
    expect(await weightsHash(run.id)).toBe(expectedHash);
    const r = await row(run.id);
    expect(r.retries).toBe(0);
    expect(r.attempt).toBe(2);
    const events = await db.prisma.runEvent.findMany({
      where: { runId: run.id, type: 'status' },
      orderBy: { id: 'asc' },
    });
    expect((events[2]!.data as { reason: string }).reason).toMatch(
      /the worker shut down; checkpointed at step \d+/,
    );
  });
});
