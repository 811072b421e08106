import { randomUUID } from 'node:crypto';
import { bootstrapAdmin, putArtifact, writeMetrics } from '@retort/db';
import { fashionMnistData } from '@retort/devstack';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type TestApi, testApi } from '../testing.js';

const F = 'file:///usr/share/datasets/fashion-mnist';
const spec = (extra: Record<string, unknown> = {}) => ({
  name: 'api-test',
  kind: 'train',
  student: { preset: 'mlp', hidden: [8] },
  data: { train: fashionMnistData(100).train },
  training: { epochs: 1 },
  ...extra,
});

describe('runs API', () => {
  let t: TestApi;
  const post = (body: unknown, headers: Record<string, string> = {}, query = '') =>
    t.app.inject({
      method: 'POST',
      url: `/v1/runs${query}`,
      headers: { ...t.auth, ...headers },
      payload: body as object,
    });
  const get = (url: string, headers: Record<string, string> = t.auth) =>
    t.app.inject({ method: 'GET', url, headers });
  const jobsWaiting = async () => {
    const q = new Queue('runs-default', { connection: t.redis, prefix: t.prefix });
    const n = await q.count();
    await q.close();
    return n;
  };

  beforeAll(async () => {
    t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'runs_api');
  });
  afterAll(async () => {
    await t.close();
  });

  it('answers 400 listing every problem of a bad spec, as JSON Pointers, and queues nothing', async () => {
    const res = await post({
      kind: 'distill',
      student: { preset: 'mlp', hidden: [0], colour: 'red' },
      data: { train: { format: 'idx', images: 'ftp://x', labels: `${F}/train-labels-idx1-ubyte.gz` } },
      training: { epochs: 0, batchSize: 100000 },
      priority: 'high',
    });
    expect(res.statusCode).toBe(400);
    const body = res.json();
    expect(body.code).toBe('RETORT_SPEC_INVALID');
    expect(body.details.map((d: { path: string }) => d.path).sort()).toEqual(
      [
        '/data/train/images',
        '/priority',
        '/student/colour',
        '/student/hidden/0',
        '/teacher',
        '/training/batchSize',
        '/training/epochs',
      ].sort(),
    );
    expect(await jobsWaiting()).toBe(0);
  });

  it('checks that URIs resolve and that a teacher run exists', async () => {
    const res = await post(
      spec({
        kind: 'distill',
        teacher: { run: randomUUID() },
        data: { train: { format: 'idx', images: `${F}/nope.gz`, labels: 'file:///etc/passwd' } },
      }),
    );
    expect(res.statusCode).toBe(400);
    expect(res.json().details).toEqual([
      { path: '/data/train/images', message: `${F}/nope.gz does not exist` },
      { path: '/data/train/labels', message: expect.stringMatching(/outside the allowed data roots/) },
      { path: '/teacher/run', message: 'no run with this id' },
    ]);
  });

  it('creates a queued run with defaults filled in, and enqueues it once', async () => {
    const res = await post(spec({ tags: { pipeline: 'nightly' } }));
    expect(res.statusCode).toBe(201);
    const run = res.json();
    expect(run).toMatchObject({
      name: 'api-test',
      kind: 'train',
      status: 'queued',
      priority: 50,
      pool: 'default',
      attempt: 0,
    });
    expect(run.tags).toEqual({ pipeline: 'nightly' });
    expect(run.spec.training).toMatchObject({ epochs: 1, batchSize: 128, seed: 42 });
    expect(run.progress).toEqual({ epoch: 0, step: 0, totalSteps: null });
    expect((await get(`/v1/runs/${run.id}`)).json()).toEqual(run);
    const q = new Queue('runs-default', { connection: t.redis, prefix: t.prefix });
    const job = await q.getJob(`${run.id}.1`);
    await q.close();
    expect(job?.data).toEqual({ runId: run.id, dispatch: 1 });
  });

  it('returns the first run for a repeated Idempotency-Key, never a second one', async () => {
    const before = await jobsWaiting();
    const key = randomUUID();
    const first = await post(spec(), { 'idempotency-key': key });
    const [second, third] = await Promise.all([
      post(spec(), { 'idempotency-key': key }),
      post(spec({ name: 'changed' }), { 'idempotency-key': key }),
    ]);
    expect(first.statusCode).toBe(201);
    expect(second.statusCode).toBe(200);
    expect(third.statusCode).toBe(200);
    expect(second.json().id).toBe(first.json().id);
    expect(third.json().id).toBe(first.json().id);
    expect(await jobsWaiting()).toBe(before + 1);
  });

  it('validates without queueing on ?dryRun=true', async () => {
    const before = await jobsWaiting();
    const res = await post(spec(), {}, '?dryRun=true');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ valid: true, spec: { name: 'api-test' } });
    expect(await jobsWaiting()).toBe(before);
  });

  it('lists runs newest first with cursor pagination and status and tag filters', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push(
        (await post(spec({ name: `page-${i}`, tags: { batch: 'pages', n: String(i % 2) } }))).json().id,
      );
    const page1 = (await get('/v1/runs?tag=batch:pages&limit=2')).json();
    const page2 = (await get(`/v1/runs?tag=batch:pages&limit=2&cursor=${page1.nextCursor}`)).json();
    const page3 = (await get(`/v1/runs?tag=batch:pages&limit=2&cursor=${page2.nextCursor}`)).json();
    expect([...page1.items, ...page2.items, ...page3.items].map((r: { id: string }) => r.id)).toEqual(
      [...ids].reverse(),
    );
    expect(page3.nextCursor).toBeNull();
    const odd = (await get('/v1/runs?tag=batch:pages&tag=n:1')).json();
    expect(odd.items.map((r: { name: string }) => r.name)).toEqual(['page-3', 'page-1']);
    expect((await get('/v1/runs?status=succeeded&tag=batch:pages')).json().items).toEqual([]);
    const bad = await get('/v1/runs?status=done');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('RETORT_REQUEST_INVALID');
  });

  it('cancels a queued run at once and removes its queue entry; a second cancel is 409', async () => {
    const run = (await post(spec())).json();
    const res = await t.app.inject({ method: 'POST', url: `/v1/runs/${run.id}/cancel`, headers: t.auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: run.id, status: 'canceled' });
    expect(res.json().finishedAt).not.toBeNull();
    const q = new Queue('runs-default', { connection: t.redis, prefix: t.prefix });
    expect(await q.getJob(`${run.id}.1`)).toBeUndefined();
    await q.close();
    const again = await t.app.inject({ method: 'POST', url: `/v1/runs/${run.id}/cancel`, headers: t.auth });
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('RETORT_INVALID_TRANSITION');
  });

  it('pauses and resumes a queued run, each move a status event, with one queue entry per dispatch', async () => {
    const run = (await post(spec())).json();
    const act = (action: string) =>
      t.app.inject({ method: 'POST', url: `/v1/runs/${run.id}/${action}`, headers: t.auth });
    const q = new Queue('runs-default', { connection: t.redis, prefix: t.prefix });
    const paused = await act('pause');
    expect(paused.json()).toMatchObject({ status: 'paused' });
    expect(await q.getJob(`${run.id}.1`)).toBeUndefined();
    expect((await act('pause')).json()).toMatchObject({ status: 'paused' }); // again: nothing changes
    expect((await act('retry')).statusCode).toBe(409);
    const resumed = await act('resume');
    expect(resumed.json()).toMatchObject({ status: 'queued' });
    expect((await q.getJob(`${run.id}.2`))?.data).toEqual({ runId: run.id, dispatch: 2 });
    expect((await act('resume')).json()).toMatchObject({ code: 'RETORT_INVALID_TRANSITION' });
    await q.close();
    const events = await t.db.prisma.runEvent.findMany({
      where: { runId: run.id, type: 'status' },
      orderBy: { id: 'asc' },
    });
    expect(events.map((e) => (e.data as { status: string }).status)).toEqual(['queued', 'paused', 'queued']);
    expect(
      events.every(
        (e) => typeof (e.data as { reason?: string }).reason === 'string' && e.createdAt instanceof Date,
      ),
    ).toBe(true);
  });

  it('retries a failed run as a new dispatch, and only a failed one', async () => {
    const run = (await post(spec())).json();
    await t.db.prisma.run.update({
      where: { id: run.id },
      data: { status: 'failed', error: { code: 'RETORT_WORKER_LOST', message: 'x' }, retries: 2 },
    });
    const res = await t.app.inject({ method: 'POST', url: `/v1/runs/${run.id}/retry`, headers: t.auth });
    expect(res.json()).toMatchObject({ status: 'queued', error: null });
    const row = await t.db.prisma.run.findUniqueOrThrow({ where: { id: run.id } });
    expect({ dispatch: row.dispatch, retries: row.retries }).toEqual({ dispatch: 2, retries: 0 });
    const again = await t.app.inject({ method: 'POST', url: `/v1/runs/${run.id}/retry`, headers: t.auth });
    expect(again.statusCode).toBe(409);
  });

  it('serves metrics by name, from a step, and downsampled to maxPoints', async () => {
    const run = (await post(spec())).json();
    await t.db.prisma.run.update({ where: { id: run.id }, data: { status: 'running', attempt: 1 } });
    const points = [];
    for (let s = 1; s <= 100; s++) points.push({ name: 'loss', step: s, value: s });
    points.push(
      { name: 'val_accuracy', step: 50, value: 0.5 },
      { name: 'val_accuracy', step: 100, value: 0.75 },
    );
    await writeMetrics(t.db, run.id, 1, points);
    const all = (await get(`/v1/runs/${run.id}/metrics`)).json();
    expect(all.series.map((s: { name: string }) => s.name).sort()).toEqual(['loss', 'val_accuracy']);
    const loss = (await get(`/v1/runs/${run.id}/metrics?name=loss&fromStep=91`)).json();
    expect(loss.series).toEqual([
      { name: 'loss', points: [91, 92, 93, 94, 95, 96, 97, 98, 99, 100].map((s) => [s, s]) },
    ]);
    const down = (await get(`/v1/runs/${run.id}/metrics?name=loss,val_accuracy&maxPoints=4`)).json();
    // 100 points in 4 buckets of 25: each answers its last step and the mean of its values.
    expect(down.series[0]).toEqual({
      name: 'loss',
      points: [
        [25, 13],
        [50, 38],
        [75, 63],
        [100, 88],
      ],
    });
    expect(down.series[1]).toEqual({
      name: 'val_accuracy',
      points: [
        [50, 0.5],
        [100, 0.75],
      ],
    });
    // A rewritten step replaces its value instead of adding a point.
    await writeMetrics(t.db, run.id, 1, [{ name: 'val_accuracy', step: 100, value: 0.8 }]);
    expect((await get(`/v1/runs/${run.id}/metrics?name=val_accuracy`)).json().series[0].points).toEqual([
      [50, 0.5],
      [100, 0.8],
    ]);
  });

  it('streams artifacts with Content-Length and an ETag of the sha256, and answers 304 to it', async () => {
    const run = (await post(spec())).json();
    await t.db.prisma.run.update({ where: { id: run.id }, data: { status: 'running', attempt: 1 } });
    // Three and a half chunks, so the stream has to stitch several reads together.
    const bytes = new Uint8Array(3.5 * (1 << 20)).map((_, i) => (i * 7919) % 251);
    const a = await putArtifact(t.db, {
      runId: run.id,
      attempt: 1,
      kind: 'checkpoint',
      name: 'step-1',
      bytes,
    });
    const list = (await get(`/v1/runs/${run.id}/artifacts`)).json();
    expect(list).toEqual([
      {
        id: a.id,
        kind: 'checkpoint',
        name: 'step-1',
        sizeBytes: bytes.length,
        sha256: a.sha256,
        createdAt: a.createdAt,
      },
    ]);
    const res = await get(`/v1/artifacts/${a.id}/content`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe(String(bytes.length));
    expect(res.headers.etag).toBe(`"${a.sha256}"`);
    expect(Buffer.compare(res.rawPayload, Buffer.from(bytes))).toBe(0);
    const cached = await t.app.inject({
      method: 'GET',
      url: `/v1/artifacts/${a.id}/content`,
      headers: { ...t.auth, 'if-none-match': `"${a.sha256}"` },
    });
    expect(cached.statusCode).toBe(304);
    expect((await get(`/v1/runs/${run.id}/model/model.json`)).json()).toMatchObject({
      code: 'RETORT_ARTIFACT_NOT_FOUND',
    });
  });

  it('keeps teams apart: another team’s run and artifacts answer 404', async () => {
    const run = (await post(spec())).json();
    const otherKey = `rk_other_${randomUUID()}`;
    const team = await t.db.prisma.team.create({ data: { name: `other-${randomUUID()}` } });
    const { createHash } = await import('node:crypto');
    await t.db.prisma.apiKey.create({
      data: {
        teamId: team.id,
        name: 'other',
        prefix: 'rk_other',
        hash: createHash('sha256').update(otherKey).digest('hex'),
        scopes: ['runs:read'],
      },
    });
    const other = { authorization: `Bearer ${otherKey}` };
    expect((await get(`/v1/runs/${run.id}`, other)).statusCode).toBe(404);
    expect((await get(`/v1/runs/${run.id}/metrics`, other)).statusCode).toBe(404);
    expect((await get('/v1/runs', other)).json().items).toEqual([]);
    // A read-only key cannot submit.
    const denied = await t.app.inject({ method: 'POST', url: '/v1/runs', headers: other, payload: spec() });
    expect(denied.statusCode).toBe(403);
    expect(denied.json().code).toBe('RETORT_FORBIDDEN');
  });

  it('answers 401 without a valid key, with a stable code', async () => {
    const none = await get('/v1/runs', {});
    expect(none.statusCode).toBe(401);
    expect(none.json().code).toBe('RETORT_UNAUTHENTICATED');
    expect((await get('/v1/runs', { authorization: 'Bearer nope' })).statusCode).toBe(401);
    // Bootstrapping again with the same key is harmless.
    await bootstrapAdmin(t.db, t.adminKey);
    expect((await get('/v1/runs')).statusCode).toBe(200);
  });

  it('answers malformed JSON with 400, other media types with 415, huge bodies with 413', async () => {
    const bad = await t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: { ...t.auth, 'content-type': 'application/json' },
      payload: '{"kind":',
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('RETORT_REQUEST_INVALID');
    const text = await t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: { ...t.auth, 'content-type': 'text/plain' },
      payload: 'hi',
    });
    expect(text.statusCode).toBe(415);
    expect(text.json().code).toBe('RETORT_UNSUPPORTED_MEDIA_TYPE');
    const huge = await post({ ...spec(), name: 'x'.repeat(2 << 20) });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().code).toBe('RETORT_PAYLOAD_TOO_LARGE');
    const unknownRun = await get(`/v1/runs/${randomUUID()}`);
    expect(unknownRun.statusCode).toBe(404);
    expect((await get('/v1/runs/not-a-uuid')).json().code).toBe('RETORT_RUN_NOT_FOUND');
  });

  it('publishes an OpenAPI document generated from the route schemas, and health endpoints', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/runs',
        '/v1/runs/{id}',
        '/v1/runs/{id}/cancel',
        '/v1/runs/{id}/metrics',
        '/v1/runs/{id}/artifacts',
        '/v1/artifacts/{id}/content',
        '/v1/runs/{id}/model/{file}',
        '/v1/runs/{id}/events',
        '/v1/workers',
        '/v1/webhooks',
        '/v1/webhooks/{webhookId}',
        '/v1/webhooks/{webhookId}/deliveries',
        '/v1/admin/teams',
        '/v1/admin/teams/{teamId}/keys',
        '/v1/admin/keys/{keyId}',
        '/v1/admin/audit',
      ]),
    );
    // Every endpoint documents its errors: the ones it has, and the ones any endpoint can answer.
    for (const [path, ops] of Object.entries(
      doc.paths as Record<
        string,
        Record<string, { security?: unknown[]; requestBody?: unknown; responses: Record<string, unknown> }>
      >,
    )) {
      for (const [method, op] of Object.entries(ops)) {
        const codes = Object.keys(op.responses);
        const where = `${method.toUpperCase()} ${path}`;
        expect([where, codes]).toEqual([where, expect.arrayContaining(['500', '503'])]);
        if (!(Array.isArray(op.security) && op.security.length === 0))
          expect([where, codes]).toEqual([where, expect.arrayContaining(['401', '403', '429'])]);
        if (op.requestBody)
          expect([where, codes]).toEqual([where, expect.arrayContaining(['400', '413', '415'])]);
      }
    }
    expect(
      doc.paths['/v1/runs'].post.requestBody.content['application/json'].schema.properties.student,
    ).toBeDefined();
    expect((await t.app.inject({ method: 'GET', url: '/docs' })).statusCode).toBeLessThan(400);
    // Prometheus: the cluster as Postgres sees it, and this process's traffic; for admin keys.
    expect((await t.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    const queued = await t.db.prisma.run.count({ where: { status: 'queued' } });
    const metrics = await get('/metrics');
    expect(metrics.statusCode).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    expect(metrics.body).toContain(`retort_runs{status="queued"} ${queued}`);
    expect(metrics.body).toMatch(
      /retort_http_requests_total\{method="GET",route="\/v1\/runs\/:id",status="404"\} \d+/,
    );
    expect(metrics.body).toContain('process_resident_memory_bytes');
    expect((await t.app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await t.app.inject({ method: 'GET', url: '/readyz' })).json()).toMatchObject({ status: 'ready' });
  });
});
