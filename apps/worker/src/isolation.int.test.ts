import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { migrate } from '@retort/db';
import { freshDatabase, freshQueuePrefix, type RetortStack, startRetort } from '@retort/devstack';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

/**
 * What a worker lets a run touch, with real processes: its team's data roots (checked again when
 * the run starts, not only at submit), and nothing of the worker's own credentials.
 */
const FMNIST = '/usr/share/datasets/fashion-mnist';

describe('a worker keeps each run to what its team may read', { timeout: 120_000 }, () => {
  let stack: RetortStack;
  const shared = mkdtempSync(path.join(tmpdir(), 'retort-roots-'));

  const api = async (method: string, url: string, key: string, body?: unknown) => {
    const res = await fetch(`${stack.baseUrl}${url}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, unknown> };
  };
  const spec = (folder: string, pool: string) => ({
    name: `reads ${path.basename(folder)}`,
    kind: 'train',
    student: { preset: 'mlp', hidden: [8] },
    data: {
      train: {
        format: 'idx',
        images: `file://${folder}/train-images-idx3-ubyte.gz`,
        labels: `file://${folder}/train-labels-idx1-ubyte.gz`,
        limit: 200,
      },
      validation: { split: 0.2 },
    },
    training: { epochs: 1, batchSize: 50 },
    resources: { pool },
  });

  beforeAll(async () => {
    for (const team of ['a', 'b']) {
      mkdirSync(path.join(shared, team));
      for (const f of ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'])
        copyFileSync(path.join(FMNIST, f), path.join(shared, team, f));
    }
    const databaseUrl = await freshDatabase(inject('postgresServerUrl'), 'isolation');
    await migrate(databaseUrl);
    stack = await startRetort({
      databaseUrl,
      redisUrl: inject('redisUrl'),
      queuePrefix: freshQueuePrefix('isolation'),
      dataRoots: [shared],
      logDir: path.join(tmpdir(), `retort-isolation-${process.pid}`),
      env: { LOG_LEVEL: 'warn' },
    });
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it("refuses at submit, and again when the run starts, a file outside the team's data roots", async () => {
    const team = await api('POST', '/v1/admin/teams', stack.adminKey, {
      name: 'team-a',
      dataRoots: [path.join(shared, 'a')],
    });
    expect(team.status).toBe(201);
    expect(team.body.dataRoots).toEqual([path.join(shared, 'a')]);
    const teamId = team.body.id as string;
    const key = (
      await api('POST', `/v1/admin/teams/${teamId}/keys`, stack.adminKey, {
        name: 'a',
        scopes: ['runs:read', 'runs:write'],
      })
    ).body.key as string;

    // At submit: the other team's folder is refused, by field.
    const other = await api('POST', '/v1/runs', key, spec(path.join(shared, 'b'), 'default'));
    expect(other.status).toBe(400);
    expect(other.body.details).toContainEqual({
      path: '/data/train/images',
      message: expect.stringMatching(/outside your team's data roots/),
    });
    // A team admin cannot widen its own roots; only an operator changes them.
    const teamAdmin = (
      await api('POST', `/v1/admin/teams/${teamId}/keys`, stack.adminKey, { name: 'adm', scopes: ['admin'] })
    ).body.key as string;
    expect((await api('PATCH', `/v1/admin/teams/${teamId}`, teamAdmin, { dataRoots: null })).status).toBe(
      403,
    );

    // Accepted while allowed; the roots narrow before a worker takes it: the worker refuses it.
    const run = await api('POST', '/v1/runs', key, spec(path.join(shared, 'a'), 'held'));
    expect(run.status).toBe(201);
    const patched = await api('PATCH', `/v1/admin/teams/${teamId}`, stack.adminKey, {
      dataRoots: [path.join(shared, 'b')],
    });
    expect(patched.body.dataRoots).toEqual([path.join(shared, 'b')]);
    await stack.addWorker({ RETORT_POOL: 'held' });
    const ended = (await api('GET', `/v1/runs/${run.body.id}?wait=true&timeout=60`, key)).body;
    expect(ended.status).toBe('failed');
    expect(ended.error).toMatchObject({
      code: 'RETORT_DATA_UNREADABLE',
      message: expect.stringMatching(/outside your team's data roots/),
    });
    // And a run in the new roots trains.
    const ok = await api('POST', '/v1/runs?wait=true&timeout=60', key, spec(path.join(shared, 'b'), 'held'));
    expect([ok.status, ok.body.status]).toEqual([201, 'succeeded']);
  });

  it('gives the training process no database or Redis address and no key', async () => {
    const workers = (await api('GET', '/v1/workers', stack.adminKey)).body as unknown as { id: string }[];
    const pid = Number(workers[0]!.id.split('-').pop());
    // The warm spare training process is there as soon as the worker is.
    const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((n) => n > 0);
    expect(children.length).toBeGreaterThan(0);
    const environ = (p: number) =>
      Object.fromEntries(
        readFileSync(`/proc/${p}/environ`, 'utf8')
          .split('\0')
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
    expect(environ(pid)).toHaveProperty('DATABASE_URL'); // the worker has them…
    for (const child of children) {
      const env = environ(child);
      expect(Object.keys(env)).not.toContain('DATABASE_URL'); // …its training processes do not
      expect(Object.keys(env)).not.toContain('REDIS_URL');
      expect(Object.keys(env)).not.toContain('RETORT_ADMIN_KEY');
      expect(env.PATH).toBeTruthy();
    }
  });

  // Last: it stops the API.
  it('stops the API promptly on SIGTERM, whatever streams and waits are open', async () => {
    const run = await api('POST', '/v1/runs', stack.adminKey, spec(path.join(shared, 'b'), 'nobody'));
    const waiting = fetch(`${stack.baseUrl}/v1/runs/${run.body.id}?wait=true&timeout=3600`, {
      headers: { authorization: `Bearer ${stack.adminKey}` },
    });
    const streaming = fetch(`${stack.baseUrl}/v1/runs/${run.body.id}/events`, {
      headers: { authorization: `Bearer ${stack.adminKey}` },
    }).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 500));
    const exited = new Promise<number | null>((resolve) => stack.api.once('exit', (code) => resolve(code)));
    stack.api.kill('SIGTERM');
    // Before, the wait held the process for its hour.
    expect(await exited).toBe(0);
    expect((await waiting).status).toBe(200);
    expect(await streaming).toMatch(/RETORT_SHUTTING_DOWN/);
  });
});
