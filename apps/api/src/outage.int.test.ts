import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bootstrapAdmin, createDb, type Db, migrate } from '@retort/db';
import {
  fashionMnistData,
  freePort,
  type LocalServer,
  startLocalPostgres,
  startLocalRedis,
} from '@retort/devstack';
import { createRedis, RunProducer } from '@retort/queue';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from './app.js';
import { documentedRoutes, TEST_CONFIG } from './testing.js';

/**
 * Every route, with Redis stopped and then with Postgres stopped: each answers within a bound (no
 * hang), with 503 where it needs what is down and success where the work can wait for the
 * reconciler; a 503 leaves nothing half-done; and when the servers come back the same process
 * serves again, with no restart.
 */
describe('while Redis or Postgres is down', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'retort-outage-'));
  const redisDir = mkdtempSync(path.join(tmpdir(), 'retort-outage-redis-'));
  let pgPort: number;
  let redisPort: number;
  let pg: LocalServer;
  let redisServer: LocalServer;
  let app: FastifyInstance;
  let db: Db;
  let redis: Redis;
  let producer: RunProducer;
  let key: string;
  const auth = () => ({ authorization: `Bearer ${key}` });
  const spec = (name: string) => ({
    name,
    kind: 'train',
    student: { preset: 'mlp', hidden: [8] },
    data: { train: fashionMnistData(100).train },
    training: { epochs: 1 },
  });

  const request = async (method: string, url: string, payload?: unknown) => {
    const started = performance.now();
    const res = await app.inject({
      method: method as 'GET',
      url,
      headers: { ...auth(), ...(payload !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
    });
    return { status: res.statusCode, ms: performance.now() - started, body: res.body, headers: res.headers };
  };

  /** Fresh things for the routes to act on, made while everything is up. */
  const fixtures = async () => {
    const queued = (await request('POST', '/v1/runs', spec('queued'))).body;
    const ended = JSON.parse((await request('POST', '/v1/runs', spec('ended'))).body).id as string;
    await request('POST', `/v1/runs/${ended}/cancel`);
    const team = JSON.parse(
      (await request('POST', '/v1/admin/teams', { name: `t${randomBytes(4).toString('hex')}` })).body,
    ).id as string;
    const keyId = JSON.parse(
      (await request('POST', `/v1/admin/teams/${team}/keys`, { name: 'k', scopes: ['runs:read'] })).body,
    ).id as string;
    const webhook = JSON.parse(
      (await request('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['run.failed'] }))
        .body,
    ).id as string;
    return { queued: JSON.parse(queued).id as string, ended, team, keyId, webhook };
  };

  const everyRoute = (f: Awaited<ReturnType<typeof fixtures>>) =>
    documentedRoutes(
      app,
      {
        liveRun: f.queued,
        endedRun: f.ended,
        artifact: f.ended,
        team: f.team,
        key: f.keyId,
        webhook: f.webhook,
      },
      spec('during the outage'),
    );

  const runCount = async () => Number((await db.pool.query('SELECT count(*) AS n FROM runs')).rows[0].n);

  beforeAll(async () => {
    pgPort = await freePort();
    redisPort = await freePort();
    pg = await startLocalPostgres({ dir: dir, port: pgPort, durable: false });
    redisServer = await startLocalRedis({ dir: redisDir, port: redisPort, durable: false });
    await migrate(pg.url);
    db = createDb(pg.url, { max: 4, statementTimeoutMs: 5000, lockTimeoutMs: 1000, connectTimeoutMs: 2000 });
    key = `rk_${randomBytes(16).toString('hex')}`;
    await bootstrapAdmin(db, key);
    redis = createRedis(redisServer.url, 'outage-test', { commandTimeoutMs: 1000 });
    producer = new RunProducer(redis, `outage-${randomBytes(3).toString('hex')}`);
    app = await buildApp({
      db,
      redis,
      producer,
      config: {
        ...TEST_CONFIG,
        adminKey: key,
        queuePrefix: producer.prefix,
        policy: { dataRoots: ['/usr/share/datasets'], allowedHosts: [], allowPrivateAddresses: true },
      },
    });
  });
  afterAll(async () => {
    await app?.close();
    await producer?.close();
    redis?.disconnect();
    await db?.close();
    await pg?.stop();
    await redisServer?.stop();
  });

  it('with Redis stopped: every route answers within 5 s, submits are kept for the reconciler; Redis back, all is well', async () => {
    const f = await fixtures();
    const before = await runCount();
    await redisServer.stop();
    const answers: Record<string, number> = {};
    for (const r of everyRoute(f)) {
      const res = await request(r.method, r.url, r.body);
      answers[`${r.method} ${r.url}`] = res.status;
      expect([r.method, r.url, res.ms < 5000]).toEqual([r.method, r.url, true]);
      expect([r.method, r.url, res.status < 500 || res.status === 503]).toEqual([r.method, r.url, true]);
    }
    // What needs only Postgres works; a submit is recorded and answered, its queue entry left to the reconciler.
    expect(answers['GET /v1/runs']).toBe(200);
    expect(answers['POST /v1/runs']).toBe(201);
    expect(answers[`GET /v1/runs/${f.ended}`]).toBe(200);
    expect(answers[`POST /v1/runs/${f.queued}/cancel`]).toBe(200);
    expect(answers['GET /readyz']).toBe(503);
    expect(answers['GET /healthz']).toBe(200);
    expect(await runCount()).toBe(before + 1);
    const ready = await request('GET', '/readyz');
    expect(JSON.parse(ready.body)).toEqual({
      status: 'unavailable',
      code: 'RETORT_DEPENDENCY_UNAVAILABLE',
      checks: { postgres: 'ok', redis: 'down' }, // nothing of the error itself: the route is public
    });

    redisServer = await startLocalRedis({ dir: redisDir, port: redisPort, durable: false });
    await expect.poll(async () => (await request('GET', '/readyz')).status, { timeout: 15_000 }).toBe(200);
    const after = JSON.parse((await request('POST', '/v1/runs', spec('after Redis came back'))).body);
    expect(await producer.jobState('default', after.id, 1)).toMatch(/waiting|prioritized/);
  });

  it('with Postgres stopped: every route answers within 5 s, 503 where it needs Postgres, and no submit half-done', async () => {
    const f = await fixtures();
    const before = await runCount();
    await pg.stop();
    const answers: Record<string, number> = {};
    for (const r of everyRoute(f)) {
      const res = await request(r.method, r.url, r.body);
      answers[`${r.method} ${r.url}`] = res.status;
      expect([r.method, r.url, res.ms < 5000]).toEqual([r.method, r.url, true]);
      if (r.url.startsWith('/v1/') || r.url === '/metrics' || r.url === '/readyz') {
        expect([r.method, r.url, res.status]).toEqual([r.method, r.url, 503]);
        expect(JSON.parse(res.body).code).toBe('RETORT_DEPENDENCY_UNAVAILABLE');
      }
    }
    expect(answers['GET /healthz']).toBe(200);
    const down = await request('GET', '/v1/runs');
    expect(down.headers['retry-after']).toBe('5');

    pg = await startLocalPostgres({ dir: dir, port: pgPort, durable: false });
    await expect.poll(async () => (await request('GET', '/v1/runs')).status, { timeout: 15_000 }).toBe(200);
    expect(await runCount()).toBe(before); // the submit that answered 503 left no run
    expect((await request('POST', '/v1/runs', spec('after Postgres came back'))).status).toBe(201);
  });
});
