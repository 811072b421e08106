import { randomUUID } from 'node:crypto';
import { fashionMnistData } from '@retort/devstack';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type TestApi, testApi } from './testing.js';

const F = 'file:///usr/share/datasets/fashion-mnist';
const good = {
  name: 'hostile',
  kind: 'train',
  student: { preset: 'mlp', hidden: [8] },
  data: { train: fashionMnistData(100).train },
  training: { epochs: 1 },
};

/** Each bad input gets the right 4xx with a stable code, and the server keeps serving. */
describe('hostile input', () => {
  let t: TestApi;
  const post = (payload: string | object, headers: Record<string, string> = {}) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: { ...t.auth, 'content-type': 'application/json', ...headers },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
  const expectError = async (
    res: { statusCode: number; json(): { code: string } },
    status: number,
    code: string,
  ) => {
    expect([res.statusCode, res.json().code]).toEqual([status, code]);
  };

  beforeAll(async () => {
    t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'hostile_api', {
      bodyLimit: 64 * 1024,
      policy: {
        dataRoots: ['/usr/share/datasets'],
        allowedHosts: ['127.0.0.1', '169.254.169.254', 'example.com'],
        allowPrivateAddresses: false,
      },
    });
  });
  afterAll(async () => {
    await t.close();
  });

  it('oversized bodies: 413', async () => {
    await expectError(await post({ ...good, name: 'x'.repeat(100 * 1024) }), 413, 'RETORT_PAYLOAD_TOO_LARGE');
  });

  it('malformed JSON, empty bodies and other content types', async () => {
    await expectError(await post('{"kind": "train",'), 400, 'RETORT_REQUEST_INVALID');
    await expectError(await post(''), 400, 'RETORT_REQUEST_INVALID');
    await expectError(
      await post('kind=train', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
      'RETORT_UNSUPPORTED_MEDIA_TYPE',
    );
    await expectError(
      await post('<run/>', { 'content-type': 'application/xml' }),
      415,
      'RETORT_UNSUPPORTED_MEDIA_TYPE',
    );
    await expectError(
      await post('{}', { 'content-type': 'text/plain' }),
      415,
      'RETORT_UNSUPPORTED_MEDIA_TYPE',
    );
  });

  it('deep nesting and huge numbers', async () => {
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    const res = await post(`{"name":"n","kind":"train","student":${deep}}`);
    expect([400, 413]).toContain(res.statusCode);
    expect(res.json().code).toMatch(/^RETORT_(SPEC_INVALID|REQUEST_INVALID|PAYLOAD_TOO_LARGE)$/);
    const huge = await post({ ...good, training: { epochs: 1e308, batchSize: 2 ** 53, seed: -1 } });
    await expectError(huge, 400, 'RETORT_SPEC_INVALID');
    expect(
      huge
        .json()
        .details.map((d: { path: string }) => d.path)
        .sort(),
    ).toEqual(['/training/batchSize', '/training/epochs', '/training/seed']);
    const wide = await post({ ...good, student: { preset: 'mlp', hidden: [8192, 8192, 8192] } });
    await expectError(wide, 400, 'RETORT_SPEC_INVALID');
    expect(wide.json().details[0]).toEqual({
      path: '/student/hidden',
      message: 'makes 134,217,728 weights between hidden layers; at most 16,777,216',
    });
    const many = await post({ ...good, data: { train: { ...good.data.train, limit: 1e12 } } });
    await expectError(many, 400, 'RETORT_SPEC_INVALID');
  });

  it('unknown fields anywhere are refused, by name', async () => {
    const res = await post({ ...good, training: { ...good.training, gpus: 8 }, __proto__x: 1 });
    await expectError(res, 400, 'RETORT_SPEC_INVALID');
    expect(
      res
        .json()
        .details.map((d: { path: string }) => d.path)
        .sort(),
    ).toEqual(['/__proto__x', '/training/gpus']);
  });

  it('invalid and unknown ids: 404 with a code', async () => {
    for (const url of [
      '/v1/runs/not-a-uuid',
      `/v1/runs/${randomUUID()}`,
      "/v1/runs/1'%20OR%201=1",
      '/v1/artifacts/../../etc',
    ]) {
      const res = await t.app.inject({ method: 'GET', url, headers: t.auth });
      expect([url, res.statusCode]).toEqual([url, 404]);
      expect(res.json().code).toMatch(/^RETORT_(RUN_|ARTIFACT_)?NOT_FOUND$/);
    }
  });

  it('missing, malformed, wrong and revoked keys: 401', async () => {
    const get = (authorization?: string) =>
      t.app.inject({ method: 'GET', url: '/v1/runs', headers: authorization ? { authorization } : {} });
    await expectError(await get(), 401, 'RETORT_UNAUTHENTICATED');
    await expectError(await get('Basic YWRtaW46YWRtaW4='), 401, 'RETORT_UNAUTHENTICATED');
    await expectError(await get(`Bearer ${t.adminKey}x`), 401, 'RETORT_UNAUTHENTICATED');
    await expectError(await get(`Bearer ${'k'.repeat(10_000)}`), 401, 'RETORT_UNAUTHENTICATED');
    const key = await t.app.inject({
      method: 'POST',
      url: `/v1/admin/teams/${t.teamId}/keys`,
      headers: t.auth,
      payload: { name: 'soon revoked', scopes: ['runs:read'] },
    });
    await t.app.inject({
      method: 'DELETE',
      url: `/v1/admin/keys/${key.json().id}`,
      headers: t.auth,
    });
    await expectError(await get(`Bearer ${key.json().key}`), 401, 'RETORT_UNAUTHENTICATED');
  });

  it('URIs: traversal, symlinks out, devices, other schemes and addresses inside the network', async () => {
    const res = await post({
      ...good,
      data: {
        train: { format: 'idx', images: `${F}/../../../../etc/passwd`, labels: 'file:///dev/zero' },
        validation: {
          format: 'idx',
          images: 'http://169.254.169.254/latest/meta-data/',
          labels: 'http://127.0.0.1:5432/',
        },
      },
      student: { uri: 'http://internal.example/model.json', format: 'tfjs-layers' },
    });
    await expectError(res, 400, 'RETORT_SPEC_INVALID');
    const byPath = Object.fromEntries(
      res.json().details.map((d: { path: string; message: string }) => [d.path, d.message]),
    );
    expect(byPath['/data/train/images']).toMatch(/outside the allowed data roots/);
    expect(byPath['/data/train/labels']).toMatch(/outside the allowed data roots/);
    expect(byPath['/data/validation/images']).toMatch(
      /169\.254\.169\.254 is a linkLocal address, which this server does not connect to/,
    );
    expect(byPath['/data/validation/labels']).toMatch(/127\.0\.0\.1 is a loopback address/);
    expect(byPath['/student/uri']).toMatch(/names host internal\.example, which is not in the allowed hosts/);
    const scheme = await post({ ...good, data: { train: { ...good.data.train, images: 'gopher://x/1' } } });
    await expectError(scheme, 400, 'RETORT_SPEC_INVALID');
  });

  it('after all that the server is healthy and serves a good request', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await post(good)).statusCode).toBe(201);
  });
});

describe('rate limits', () => {
  let t: TestApi;
  beforeAll(async () => {
    t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'rate_api', { rateLimitPerMin: 5 });
  });
  afterAll(async () => {
    await t.close();
  });

  it('a key over its limit gets 429 with Retry-After; other keys and health checks do not', async () => {
    const other = await t.app.inject({
      method: 'POST',
      url: `/v1/admin/teams/${t.teamId}/keys`,
      headers: t.auth,
      payload: { name: 'other', scopes: ['runs:read'] },
    });
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof t.app.inject>> | undefined;
    for (let i = 0; i < 7; i++) {
      last = await t.app.inject({ method: 'GET', url: '/v1/runs', headers: t.auth });
      statuses.push(last.statusCode);
    }
    // The admin key made one request (creating the other key) before these.
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429, 429]);
    expect(last!.json().code).toBe('RETORT_RATE_LIMITED');
    expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
    const otherKey = await t.app.inject({
      method: 'GET',
      url: '/v1/runs',
      headers: { authorization: `Bearer ${other.json().key}` },
    });
    expect(otherKey.statusCode).toBe(200);
    for (let i = 0; i < 10; i++)
      expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });
});
