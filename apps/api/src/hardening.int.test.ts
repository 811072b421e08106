import { randomUUID } from 'node:crypto';
import { bootstrapAdmin, claimRun, createRun, writeMetrics } from '@retort/db';
import { fashionMnistData } from '@retort/devstack';
import { parseSpec } from '@retort/spec';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { documentedRoutes, type RouteIds, type TestApi, testApi } from './testing.js';

const runSpec = {
  name: 'hardening',
  kind: 'train',
  student: { preset: 'mlp', hidden: [8] },
  data: { train: fashionMnistData(100).train },
  training: { epochs: 1 },
};

/**
 * Bad input of any kind, on every route, is a 4xx with a stable code (never a 500); nothing a
 * client sends is silently dropped; refusals are audited; guessing keys is limited.
 */
describe('hardening', () => {
  let t: TestApi;
  let ids: RouteIds;
  const call = (method: string, url: string, payload?: unknown, headers: Record<string, string> = t.auth) =>
    t.app.inject({
      method: method as 'GET',
      url,
      headers: { ...headers, ...(payload !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
    });

  beforeAll(async () => {
    t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'hardening_api', {
      limits: { webhooksPerTeam: 3, streamsPerKey: 8, authFailuresPerMin: 5 },
      policy: { dataRoots: ['/usr/share/datasets'], allowedHosts: [], allowPrivateAddresses: true },
    });
    const live = (await call('POST', '/v1/runs', runSpec)).json().id;
    const ended = (await call('POST', '/v1/runs', runSpec)).json().id;
    await call('POST', `/v1/runs/${ended}/cancel`);
    const team = (await call('POST', '/v1/admin/teams', { name: 'hardening-other' })).json().id;
    const key = (
      await call('POST', `/v1/admin/teams/${team}/keys`, { name: 'k', scopes: ['runs:read'] })
    ).json().id;
    const webhook = (
      await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/h', events: ['run.failed'] })
    ).json().id;
    ids = { liveRun: live, endedRun: ended, artifact: randomUUID(), team, key, webhook };
  });
  afterAll(async () => {
    await t.close();
  });

  const HOSTILE_IDS = [
    'a'.repeat(36),
    '0'.repeat(1000),
    '%00',
    '..%2F..%2Fetc%2Fpasswd',
    '9'.repeat(40),
    "1'%20OR%201=1",
    '%F0%9F%92%A5',
  ];

  it('answers hostile path parameters on every route with a 4xx and a code', async () => {
    const seen: string[] = [];
    for (const r of documentedRoutes(t.app, ids, runSpec)) {
      const params = [...r.template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      for (const param of params) {
        for (const bad of HOSTILE_IDS) {
          const url = r.template.replace(/\{(\w+)\}/g, (_, p: string) =>
            p === param ? bad : r.url.split('/')[r.template.split('/').indexOf(`{${p}}`)]!,
          );
          const res = await call(r.method, url, r.body);
          seen.push(`${r.method} ${url}`);
          expect([r.method, url, res.statusCode >= 400 && res.statusCode < 500]).toEqual([
            r.method,
            url,
            true,
          ]);
          expect(res.json().code).toMatch(/^RETORT_/);
        }
      }
    }
    expect(seen.length).toBeGreaterThan(100);
  });

  it('answers hostile query strings on every route with a 4xx or a normal answer, never a 500', async () => {
    const doc = t.app.swagger() as {
      paths: Record<string, Record<string, { parameters?: { in: string; name: string }[] }>>;
    };
    let tried = 0;
    for (const r of documentedRoutes(t.app, ids, runSpec)) {
      const op = doc.paths[r.template]![r.method.toLowerCase()]!;
      for (const q of (op.parameters ?? []).filter((p) => p.in === 'query')) {
        for (const bad of [
          '-1',
          '99999999999999999999',
          '3000000000',
          'abc',
          '%00',
          'x'.repeat(3000),
          '1e400',
        ]) {
          const res = await call(r.method, `${r.url}?${q.name}=${bad}`, r.body);
          tried++;
          expect([r.method, r.url, q.name, bad, res.statusCode < 500]).toEqual([
            r.method,
            r.url,
            q.name,
            bad,
            true,
          ]);
          if (res.statusCode >= 400) expect(res.json().code).toMatch(/^RETORT_/);
        }
      }
    }
    expect(tried).toBeGreaterThan(50);
    // The cases that answered 500 before.
    expect((await call('GET', `/v1/artifacts/${'a'.repeat(36)}`)).statusCode).toBe(404);
    const forged = await call(
      'GET',
      `/v1/runs?cursor=${Buffer.from(`2026-01-01T00:00:00.000Z|${'a'.repeat(36)}`).toString('base64url')}`,
    );
    expect([forged.statusCode, forged.json().code]).toEqual([400, 'RETORT_REQUEST_INVALID']);
    const audit = await call('GET', '/v1/admin/audit?cursor=9999999999999999999');
    expect([audit.statusCode, audit.json().details[0].path]).toEqual([400, '/querystring/cursor']);
    const step = await call('GET', `/v1/runs/${ids.endedRun}/metrics?fromStep=3000000000`);
    expect(step.statusCode).toBe(400);
    const nul = await call('GET', '/v1/runs?tag=a:%00');
    expect([nul.statusCode, nul.json().details[0].path]).toEqual([400, '/querystring/tag']);
    const name = await call('POST', '/v1/runs', { ...runSpec, name: 'a\u0000b' });
    expect([name.statusCode, name.json().details[0].path]).toEqual([400, '/body/name']);
  });

  it('refuses unknown fields in every body, naming them', async () => {
    let bodies = 0;
    for (const r of documentedRoutes(t.app, ids, runSpec)) {
      if (!r.body) continue;
      bodies++;
      const res = await call(r.method, r.url, { ...r.body, notAField: 1 });
      expect([r.method, r.template, res.statusCode]).toEqual([r.method, r.template, 400]);
      expect(res.json().details.map((d: { path: string }) => d.path)).toContainEqual(
        expect.stringMatching(/notAField$/),
      );
    }
    expect(bodies).toBeGreaterThanOrEqual(5);
  });

  it('quotes nothing of a body it cannot parse', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: { ...t.auth, 'content-type': 'application/json' },
      payload: '{"name": "s3cr3t-token-value" oops',
    });
    expect([res.statusCode, res.json().code]).toEqual([400, 'RETORT_REQUEST_INVALID']);
    expect(res.body).not.toMatch(/s3cr3t/);
  });

  it('audits a write refused for its scope', async () => {
    const reader = (
      await call('POST', `/v1/admin/teams/${t.teamId}/keys`, { name: 'r', scopes: ['runs:read'] })
    ).json();
    const refused = await call('POST', '/v1/runs', runSpec, { authorization: `Bearer ${reader.key}` });
    expect(refused.statusCode).toBe(403);
    await expect
      .poll(async () =>
        (await call('GET', '/v1/admin/audit?limit=20'))
          .json()
          .items.find((e: { keyId: string; status: number }) => e.keyId === reader.id && e.status === 403),
      )
      .toMatchObject({ action: 'POST /v1/runs', teamId: t.teamId });
  });

  it('limits failed authentication per address, before looking keys up', async () => {
    const from = (address: string, key: string) =>
      t.app.inject({
        method: 'GET',
        url: '/v1/runs',
        headers: { authorization: `Bearer ${key}` },
        remoteAddress: address,
      });
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await from('203.0.113.7', `rtk_guess${i}`)).statusCode);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429]);
    const blocked = await from('203.0.113.7', t.adminKey); // even a good key, from there, this minute
    expect([blocked.statusCode, blocked.json().code]).toEqual([429, 'RETORT_RATE_LIMITED']);
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    expect((await from('203.0.113.8', t.adminKey)).statusCode).toBe(200); // another address is not affected
  });

  it('keeps a revoked bootstrap key revoked across restarts', async () => {
    const mine = (await call('GET', `/v1/admin/teams/${t.teamId}/keys`)).json().items[0];
    const spare = (
      await call('POST', `/v1/admin/teams/${t.teamId}/keys`, { name: 'spare', scopes: ['admin'] })
    ).json();
    await call('DELETE', `/v1/admin/keys/${mine.id}`, undefined, { authorization: `Bearer ${spare.key}` });
    expect((await call('GET', '/v1/runs')).statusCode).toBe(401);
    const again = await bootstrapAdmin(t.db, t.adminKey); // what every API start does
    expect(again.revoked).toBe(true);
    expect((await call('GET', '/v1/runs')).statusCode).toBe(401);
    t.auth = { authorization: `Bearer ${spare.key}` };
  });

  it('gives teams data roots inside the server’s, and lets only operators change them', async () => {
    const bad = await call('POST', '/v1/admin/teams', {
      name: 'roots-bad',
      dataRoots: ['relative/path', '/etc', '/usr/share/datasets/fashion-mnist'],
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().details.map((d: { path: string }) => d.path)).toEqual([
      '/body/dataRoots/0',
      '/body/dataRoots/1',
    ]);
    expect((await call('POST', '/v1/admin/teams', { name: 'roots-empty', dataRoots: [] })).statusCode).toBe(
      400,
    );
    const team = await call('POST', '/v1/admin/teams', {
      name: 'roots',
      dataRoots: ['/usr/share/datasets/elsewhere'],
    });
    expect(team.json().dataRoots).toEqual(['/usr/share/datasets/elsewhere']);
    const key = (
      await call('POST', `/v1/admin/teams/${team.json().id}/keys`, { name: 'k', scopes: ['runs:write'] })
    ).json();
    const refused = await call('POST', '/v1/runs', runSpec, { authorization: `Bearer ${key.key}` });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().details[0]).toEqual({
      path: '/data/train/images',
      message: expect.stringMatching(/outside your team's data roots \(\/usr\/share\/datasets\/elsewhere\)/),
    });
    const widened = await call('PATCH', `/v1/admin/teams/${team.json().id}`, { dataRoots: null });
    expect([widened.statusCode, widened.json().dataRoots]).toEqual([200, null]);
    expect((await call('GET', `/v1/admin/teams/${team.json().id}`)).json().dataRoots).toBeNull();
    expect((await call('POST', '/v1/runs', runSpec, { authorization: `Bearer ${key.key}` })).statusCode).toBe(
      201,
    );
  });

  it('caps webhooks per team', async () => {
    // One exists already (from the setup); the limit here is 3.
    for (let i = 0; i < 2; i++)
      expect(
        (await call('POST', '/v1/webhooks', { url: `http://127.0.0.1:9/${i}`, events: ['run.failed'] }))
          .statusCode,
      ).toBe(201);
    const over = await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/x', events: ['run.failed'] });
    expect([over.statusCode, over.json().code]).toEqual([409, 'RETORT_LIMIT_REACHED']);
  });

  it('reads a long metric series in pages, never all at once', async () => {
    const { run } = await createRun(t.db, {
      teamId: t.teamId,
      spec: parseSpec(runSpec),
      idempotencyKey: undefined,
    });
    const { run: claimed } = await claimRun(t.db, run.id, run.dispatch, {
      id: 'w',
      backend: 'wasm',
      device: 'cpu',
    });
    const points = Array.from({ length: 12_000 }, (_, i) => ({
      name: 'loss',
      step: i + 1,
      value: 1 / (i + 1),
    }));
    await writeMetrics(t.db, run.id, claimed!.attempt, points);
    const first = (await call('GET', `/v1/runs/${run.id}/metrics?name=loss`)).json().series[0];
    expect(first.points).toHaveLength(10_000);
    expect(first.nextFromStep).toBe(10_001);
    const rest = (
      await call('GET', `/v1/runs/${run.id}/metrics?name=loss&fromStep=${first.nextFromStep}`)
    ).json().series[0];
    expect(rest.points).toHaveLength(2000);
    expect(rest.nextFromStep).toBeUndefined();
    expect(rest.points.at(-1)).toEqual([12_000, 1 / 12_000]);
  });

  it('answers 503 within the lock timeout when a run is locked, instead of waiting', async () => {
    const id = (await call('POST', '/v1/runs', runSpec)).json().id;
    const holder = await t.db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM runs WHERE id = $1 FOR UPDATE', [id]);
      const res = await call('POST', `/v1/runs/${id}/cancel`);
      expect([res.statusCode, res.json().code]).toEqual([503, 'RETORT_DEPENDENCY_UNAVAILABLE']);
      expect(res.headers['retry-after']).toBe('5');
    } finally {
      await holder.query('ROLLBACK');
    }
    expect((await call('POST', `/v1/runs/${id}/cancel`)).json().status).toBe('canceled');
    // A submit that Postgres cannot take in time (here: the table is locked) answers 503 and leaves
    // no run behind, with or without a wait.
    const count = async () => Number((await t.db.pool.query('SELECT count(*) AS n FROM runs')).rows[0].n);
    const before = await count();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE');
    try {
      for (const url of ['/v1/runs', '/v1/runs?wait=true&timeout=5']) {
        const res = await call('POST', url, runSpec);
        expect([url, res.statusCode, res.json().code]).toEqual([url, 503, 'RETORT_DEPENDENCY_UNAVAILABLE']);
      }
    } finally {
      await holder.query('ROLLBACK');
    }
    expect(await count()).toBe(before);
    holder.release();
    const settings = await t.db.pool.query(
      `SELECT current_setting('statement_timeout') AS s, current_setting('lock_timeout') AS l`,
    );
    expect(settings.rows[0]).toEqual({ s: '15s', l: '500ms' });
  });
});
