import { createHash } from 'node:crypto';
import { fashionMnistData } from '@retort/devstack';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type TestApi, testApi } from '../testing.js';

const runSpec = {
  name: 'tenancy',
  kind: 'train',
  student: { preset: 'mlp', hidden: [8] },
  data: { train: fashionMnistData(100).train },
  training: { epochs: 1 },
};

describe('teams, keys and the audit log', () => {
  let t: TestApi;
  const call = (method: 'GET' | 'POST' | 'DELETE', url: string, key?: string, payload?: object) =>
    t.app.inject({
      method,
      url,
      headers: key === undefined ? t.auth : { authorization: `Bearer ${key}` },
      ...(payload ? { payload } : {}),
    });

  beforeAll(async () => {
    t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'admin_api');
  });
  afterAll(async () => {
    await t.close();
  });

  it('an operator creates a team and a key for it; the key is shown once and stored only as a hash', async () => {
    const team = await call('POST', '/v1/admin/teams', undefined, { name: 'vision' });
    expect(team.statusCode).toBe(201);
    expect(team.json()).toMatchObject({ name: 'vision' });
    const again = await call('POST', '/v1/admin/teams', undefined, { name: 'vision' });
    expect([again.statusCode, again.json().code]).toEqual([409, 'RETORT_CONFLICT']);

    const res = await call('POST', `/v1/admin/teams/${team.json().id}/keys`, undefined, {
      name: 'nightly CI',
      scopes: ['runs:read', 'runs:write'],
    });
    expect(res.statusCode).toBe(201);
    const { key, id, prefix } = res.json();
    expect(key).toMatch(/^rtk_[A-Za-z0-9_-]{43}$/);
    expect(key.startsWith(prefix)).toBe(true);
    const row = await t.db.prisma.apiKey.findUniqueOrThrow({ where: { id } });
    expect(row.hash).toBe(createHash('sha256').update(key).digest('hex'));
    expect(JSON.stringify(row)).not.toContain(key);
    const listed = await call('GET', `/v1/admin/teams/${team.json().id}/keys`);
    expect(listed.json().items).toHaveLength(1);
    expect(JSON.stringify(listed.json())).not.toContain(key);
    expect(listed.json().items[0].lastUsedAt).toBeNull();

    // The new key works, within its team and scopes, and its use is recorded.
    const submitted = await call('POST', '/v1/runs', key, runSpec);
    expect(submitted.statusCode).toBe(201);
    expect((await call('GET', `/v1/admin/teams/${team.json().id}/keys`, key)).statusCode).toBe(403);
    // Last use is recorded beside the request, not in its path.
    await expect
      .poll(async () => (await t.db.prisma.apiKey.findUniqueOrThrow({ where: { id } })).lastUsedAt)
      .not.toBeNull();
  });

  it('keeps teams apart: another team’s runs, teams and keys answer 404, its list is empty', async () => {
    const a = (await call('POST', '/v1/admin/teams', undefined, { name: 'team-a' })).json();
    const b = (await call('POST', '/v1/admin/teams', undefined, { name: 'team-b' })).json();
    const keyA = (
      await call('POST', `/v1/admin/teams/${a.id}/keys`, undefined, { name: 'a', scopes: ['admin'] })
    ).json().key;
    const keyB = (
      await call('POST', `/v1/admin/teams/${b.id}/keys`, undefined, { name: 'b', scopes: ['admin'] })
    ).json().key;
    const run = (await call('POST', '/v1/runs', keyA, runSpec)).json();
    for (const url of [`/v1/runs/${run.id}`, `/v1/runs/${run.id}/metrics`, `/v1/runs/${run.id}/artifacts`]) {
      const res = await call('GET', url, keyB);
      expect([url, res.statusCode]).toEqual([url, 404]);
    }
    expect((await call('POST', `/v1/runs/${run.id}/cancel`, keyB)).statusCode).toBe(404);
    expect((await call('GET', '/v1/runs', keyB)).json().items).toEqual([]);
    // A team's admin manages its own keys only; it cannot create teams.
    expect((await call('GET', `/v1/admin/teams/${a.id}/keys`, keyB)).statusCode).toBe(404);
    expect(
      (await call('POST', `/v1/admin/teams/${a.id}/keys`, keyB, { name: 'x', scopes: ['admin'] })).statusCode,
    ).toBe(404);
    expect((await call('GET', `/v1/admin/teams/${b.id}/keys`, keyB)).statusCode).toBe(200);
    const keyAId = (await call('GET', `/v1/admin/teams/${a.id}/keys`)).json().items[0].id;
    expect((await call('DELETE', `/v1/admin/keys/${keyAId}`, keyB)).statusCode).toBe(404);
    expect((await call('GET', '/v1/runs', keyA)).statusCode).toBe(200);
    expect(
      (await call('GET', '/v1/admin/teams', keyB)).json().items.map((x: { name: string }) => x.name),
    ).toEqual(['team-b']);
    const create = await call('POST', '/v1/admin/teams', keyB, { name: 'team-c' });
    expect([create.statusCode, create.json().code]).toEqual([403, 'RETORT_FORBIDDEN']);
    // The run is still there for its own team.
    expect((await call('GET', `/v1/runs/${run.id}`, keyA)).statusCode).toBe(200);
  });

  it('a revoked key answers 401 from the next request on', async () => {
    const team = (await call('POST', '/v1/admin/teams', undefined, { name: 'short-lived' })).json();
    const k = (
      await call('POST', `/v1/admin/teams/${team.id}/keys`, undefined, { name: 'tmp', scopes: ['runs:read'] })
    ).json();
    expect((await call('GET', '/v1/runs', k.key)).statusCode).toBe(200);
    const revoked = await call('DELETE', `/v1/admin/keys/${k.id}`);
    expect(revoked.statusCode).toBe(200);
    expect(revoked.json().revokedAt).not.toBeNull();
    const res = await call('GET', '/v1/runs', k.key);
    expect([res.statusCode, res.json().code]).toEqual([401, 'RETORT_UNAUTHENTICATED']);
    expect((await call('DELETE', `/v1/admin/keys/not-a-uuid`)).statusCode).toBe(404);
  });

  it('records every write with who, what and when; reads are not recorded', async () => {
    const before = await t.db.prisma.auditEntry.count();
    const team = (await call('POST', '/v1/admin/teams', undefined, { name: 'audited' })).json();
    const k = (
      await call('POST', `/v1/admin/teams/${team.id}/keys`, undefined, { name: 'w', scopes: ['runs:write'] })
    ).json();
    const run = (await call('POST', '/v1/runs', k.key, runSpec)).json();
    await call('POST', `/v1/runs/${run.id}/cancel`, k.key);
    await call('GET', `/v1/runs/${run.id}`);
    await call('POST', '/v1/runs', k.key, { ...runSpec, training: { epochs: 0 } }); // 400, still a write attempt
    // Entries are written after the answer is sent.
    await expect.poll(async () => (await t.db.prisma.auditEntry.count()) - before).toBe(5);
    const log = (await call('GET', `/v1/admin/audit?teamId=${team.id}`)).json().items;
    expect(log.map((e: { action: string; status: number }) => `${e.action} ${e.status}`)).toEqual([
      'POST /v1/runs 400',
      'POST /v1/runs/:id/cancel 200',
      'POST /v1/runs 201',
    ]);
    expect(log[2]).toMatchObject({ keyId: k.id, teamId: team.id, target: run.id });
    expect(Date.parse(log[2].createdAt)).toBeGreaterThan(Date.now() - 60_000);
    // The team's own admin sees its entries only.
    const admin = (
      await call('POST', `/v1/admin/teams/${team.id}/keys`, undefined, { name: 'adm', scopes: ['admin'] })
    ).json();
    const own = (await call('GET', '/v1/admin/audit', admin.key)).json().items;
    expect(own.every((e: { teamId: string }) => e.teamId === team.id)).toBe(true);
    expect(own).toHaveLength(3);
  });
});
