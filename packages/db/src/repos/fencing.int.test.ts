import { randomBytes } from 'node:crypto';
import { freshDatabase } from '@retort/devstack';
import { parseSpec } from '@retort/spec';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb, type Db, FencedOutError } from '../client.js';
import { migrate } from '../migrate.js';
import { listArtifacts, putArtifact } from './artifacts.js';
import { getSeries, writeMetrics } from './metrics.js';
import { claimRun, finishRun, requeueRun, updateProgress } from './run-lifecycle.js';
import { createRun } from './runs.js';
import { bootstrapAdmin } from './teams.js';

const spec = parseSpec({
  kind: 'train',
  student: { preset: 'mlp' },
  data: { train: { format: 'idx', images: 'file:///x', labels: 'file:///y' } },
  training: { maxAttempts: 3 },
});

describe('fencing: a worker that lost its claim cannot write', () => {
  let db: Db;
  let teamId: string;
  const workerA = { id: 'a', backend: 'wasm', device: 'cpu' };
  const workerB = { id: 'b', backend: 'wasm', device: 'cpu' };

  beforeAll(async () => {
    const url = await freshDatabase(inject('postgresServerUrl'), 'fencing');
    await migrate(url);
    db = createDb(url);
    teamId = (await bootstrapAdmin(db, randomBytes(16).toString('hex'))).teamId;
  });
  afterAll(async () => {
    await db.close();
  });

  it('refuses metrics, progress, artifacts and a final status from a superseded attempt', async () => {
    const { run } = await createRun(db, { teamId, spec });
    const a = (await claimRun(db, run.id, 1, workerA)).run!;
    expect(a.attempt).toBe(1);
    await writeMetrics(db, run.id, 1, [{ name: 'loss', step: 1, value: 1 }]);
    // Worker A stalls; its run is taken again (as after a lost lock) by worker B.
    const b = (await claimRun(db, run.id, 1, workerB)).run!;
    expect(b).toMatchObject({ attempt: 2, workerId: 'b', retries: 1 });

    await expect(writeMetrics(db, run.id, 1, [{ name: 'loss', step: 2, value: 99 }])).rejects.toBeInstanceOf(
      FencedOutError,
    );
    await expect(updateProgress(db, run.id, 1, { epoch: 1, step: 2, totalSteps: 10 })).rejects.toBeInstanceOf(
      FencedOutError,
    );
    await expect(
      putArtifact(db, {
        runId: run.id,
        attempt: 1,
        kind: 'student-model',
        name: 'model.json',
        bytes: new Uint8Array([1]),
      }),
    ).rejects.toBeInstanceOf(FencedOutError);
    await expect(finishRun(db, run.id, 1, { status: 'canceled', reason: 'late' })).rejects.toBeInstanceOf(
      FencedOutError,
    );
    await expect(requeueRun(db, run.id, 1, 'late', { lost: true })).rejects.toBeInstanceOf(FencedOutError);

    // Nothing of A's late writes landed; B writes freely.
    await writeMetrics(db, run.id, 2, [{ name: 'loss', step: 2, value: 0.5 }]);
    expect((await getSeries(db, run.id, { limit: 100_000 })).series).toEqual([
      {
        name: 'loss',
        points: [
          [1, 1],
          [2, 0.5],
        ],
      },
    ]);
    expect(await listArtifacts(db, run.id)).toEqual([]);
    const done = await finishRun(db, run.id, 2, { status: 'canceled', reason: 'test' });
    expect(done.status).toBe('canceled');
  });

  it('claims only for the current dispatch, and fails a run that lost its worker maxAttempts times', async () => {
    const { run } = await createRun(db, { teamId, spec });
    expect((await claimRun(db, run.id, 7, workerA)).reason).toMatch(/stale queue entry/);
    // Three attempts (training.maxAttempts): the first, then two after lost workers.
    for (let i = 1; i <= 3; i++)
      expect((await claimRun(db, run.id, 1, workerA)).run).toMatchObject({ attempt: i, retries: i - 1 });
    // The third attempt is lost too: there is no fourth.
    const fourth = await claimRun(db, run.id, 1, workerB);
    expect(fourth.run).toBeNull();
    const failed = await db.prisma.run.findUniqueOrThrow({ where: { id: run.id } });
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ code: 'RETORT_WORKER_LOST' });
  });

  it('counts a crashed attempt as a retry when it goes back to the queue', async () => {
    const { run } = await createRun(db, { teamId, spec });
    await claimRun(db, run.id, 1, workerA);
    const queued = await requeueRun(db, run.id, 1, 'crashed', { lost: true });
    expect(queued).toMatchObject({ status: 'queued', retries: 1, dispatch: 2, workerId: null });
    await claimRun(db, run.id, 2, workerA);
    const handedBack = await requeueRun(db, run.id, 2, 'shutdown', { lost: false });
    expect(handedBack).toMatchObject({ status: 'queued', retries: 1, dispatch: 3 });
  });
});
