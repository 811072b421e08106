import { fashionMnistData, parseEventStream } from '@retort/devstack';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type TestApi, testApi } from '../testing.js';

describe('run events (Server-Sent Events)', () => {
  let t: TestApi;
  beforeAll(async () => {
    t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'events_api');
  });
  afterAll(async () => {
    await t.close();
  });

  const stream = (id: string, headers: Record<string, string> = {}, query = '') =>
    t.app.inject({ method: 'GET', url: `/v1/runs/${id}/events${query}`, headers: { ...t.auth, ...headers } });

  /** A small training run, submitted as the admin team. */
  const submitRun = async () =>
    (
      await t.app.inject({
        method: 'POST',
        url: '/v1/runs',
        headers: t.auth,
        payload: { kind: 'train', student: { preset: 'mlp' }, data: { train: fashionMnistData(100).train } },
      })
    ).json();

  it('replays an ended run’s status changes in order with ids, then ends; resumes after Last-Event-ID', async () => {
    const run = await submitRun();
    await t.app.inject({ method: 'POST', url: `/v1/runs/${run.id}/pause`, headers: t.auth });
    await t.app.inject({ method: 'POST', url: `/v1/runs/${run.id}/cancel`, headers: t.auth });
    const res = await stream(run.id);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = parseEventStream(res.body);
    expect(events.map((e) => `${e.event}:${(e.data as { status?: string }).status ?? ''}`)).toEqual([
      'status:queued',
      'status:paused',
      'status:canceled',
      'end:canceled',
    ]);
    const ids = events.filter((e) => e.id).map((e) => BigInt(e.id!));
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : 1)));
    const resumed = parseEventStream((await stream(run.id, { 'last-event-id': events[0]!.id! })).body);
    expect(resumed.map((e) => e.event)).toEqual(['status', 'status', 'end']);
    expect(resumed[0]!.id).toBe(events[1]!.id);
    const after = parseEventStream((await stream(run.id, {}, `?after=${events[1]!.id}`)).body);
    expect(after.map((e) => e.id ?? e.event)).toEqual([events[2]!.id, 'end']);
  });

  it('answers 404 for another team’s run and 400 for a bad Last-Event-ID, before any stream', async () => {
    const team = (
      await t.app.inject({
        method: 'POST',
        url: '/v1/admin/teams',
        headers: t.auth,
        payload: { name: 'ev-other' },
      })
    ).json();
    const key = (
      await t.app.inject({
        method: 'POST',
        url: `/v1/admin/teams/${team.id}/keys`,
        headers: t.auth,
        payload: { name: 'k', scopes: ['runs:read'] },
      })
    ).json().key;
    const run = await submitRun();
    const foreign = await t.app.inject({
      method: 'GET',
      url: `/v1/runs/${run.id}/events`,
      headers: { authorization: `Bearer ${key}` },
    });
    expect([foreign.statusCode, foreign.json().code]).toEqual([404, 'RETORT_RUN_NOT_FOUND']);
    const bad = await stream(run.id, { 'last-event-id': 'abc' });
    expect([bad.statusCode, bad.json().code]).toEqual([400, 'RETORT_REQUEST_INVALID']);
  });
});
