import { fashionMnistData, parseEventStream } from '@retort/devstack';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type TestApi, testApi } from '../testing.js';

/** A small training run, submitted as the admin team (no worker takes it here). */
const submitSmallRun = async (t: TestApi) =>
  (
    await t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: t.auth,
      payload: { kind: 'train', student: { preset: 'mlp' }, data: { train: fashionMnistData(100).train } },
    })
  ).json();

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

  const submitRun = () => submitSmallRun(t);

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

/** Streams and waits stay open: they are counted per key and end on revocation and on shutdown. */
describe('long requests are bounded', () => {
  const open = async (t: TestApi) => {
    const address = await t.app.listen({ host: '127.0.0.1', port: 0 });
    const run = await submitSmallRun(t);
    const newKey = async (scopes: string[]) =>
      (
        await t.app.inject({
          method: 'POST',
          url: `/v1/admin/teams/${t.teamId}/keys`,
          headers: t.auth,
          payload: { name: 'long', scopes },
        })
      ).json() as { id: string; key: string };
    /** A live event stream of the (queued) run: its text so far, and how it ended. */
    const follow = (key: string) => {
      const abort = new AbortController();
      const state = { text: '', status: 0, ended: false };
      const done = (async () => {
        const res = await fetch(`${address}/v1/runs/${run.id}/events`, {
          headers: { authorization: `Bearer ${key}` },
          signal: abort.signal,
        });
        state.status = res.status;
        const reader = res.body!.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          state.text += new TextDecoder().decode(value);
        }
        state.ended = true;
      })().catch(() => {});
      return { state, done, abort: () => abort.abort() };
    };
    const waitFor = (key: string) =>
      fetch(`${address}/v1/runs/${run.id}?wait=true&timeout=600`, {
        headers: { authorization: `Bearer ${key}` },
      });
    return { run, newKey, follow, waitFor };
  };

  it('a key holds at most its share of streams and waits; others are not affected', async () => {
    const t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'long_cap', {
      limits: { webhooksPerTeam: 20, streamsPerKey: 2, authFailuresPerMin: 1000 },
    });
    try {
      const { newKey, follow, waitFor } = await open(t);
      const k = (await newKey(['runs:read'])).key;
      const a = follow(k);
      const b = follow(k);
      await expect.poll(() => a.state.status * b.state.status, { timeout: 10_000 }).toBe(200 * 200);
      const third = await waitFor(k);
      expect([third.status, ((await third.json()) as { code: string }).code]).toEqual([
        429,
        'RETORT_RATE_LIMITED',
      ]);
      const other = follow((await newKey(['runs:read'])).key);
      await expect.poll(() => other.state.status, { timeout: 10_000 }).toBe(200);
      a.abort();
      await expect.poll(() => t.app.longRequests.size, { timeout: 10_000 }).toBe(2); // the server saw it go
      const again = follow(k);
      await expect.poll(() => again.state.status, { timeout: 10_000 }).toBe(200);
      for (const s of [b, other, again]) s.abort();
      // Clients that leave at once, however early, give their places back.
      await expect.poll(() => t.app.longRequests.size, { timeout: 10_000 }).toBe(0);
      for (let i = 0; i < 20; i++) follow(k).abort();
      await expect.poll(() => t.app.longRequests.size, { timeout: 10_000 }).toBe(0);
      const last = follow(k);
      await expect.poll(() => last.state.status, { timeout: 10_000 }).toBe(200);
      last.abort();
    } finally {
      await t.close();
    }
  });

  it('ends the streams and waits of a key when it is revoked', async () => {
    const t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'long_revoke');
    try {
      const { newKey, follow, waitFor } = await open(t);
      const k = await newKey(['runs:read']);
      const s = follow(k.key);
      await expect.poll(() => s.state.status, { timeout: 10_000 }).toBe(200);
      const waiting = waitFor(k.key);
      await expect.poll(() => t.app.longRequests.size, { timeout: 10_000 }).toBe(2); // both are open
      await t.app.inject({ method: 'DELETE', url: `/v1/admin/keys/${k.id}`, headers: t.auth });
      const answer = await waiting;
      expect([answer.status, ((await answer.json()) as { code: string }).code]).toEqual([
        401,
        'RETORT_UNAUTHENTICATED',
      ]);
      await s.done;
      expect(s.state.ended).toBe(true);
      const last = parseEventStream(s.state.text).at(-1)!;
      expect([last.event, (last.data as { code: string }).code]).toEqual(['error', 'RETORT_UNAUTHENTICATED']);
    } finally {
      await t.close();
    }
  });

  it('does not let an open stream or wait hold up shutdown', async () => {
    const t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'long_close');
    const { follow, waitFor } = await open(t);
    const s = follow(t.adminKey);
    await expect.poll(() => s.state.status, { timeout: 10_000 }).toBe(200);
    const waiting = waitFor(t.adminKey);
    await expect.poll(() => t.app.longRequests.size, { timeout: 10_000 }).toBe(2);
    await t.close(); // before: held until the wait's timeout (600 s here)
    const answer = await waiting;
    expect(answer.status).toBe(200);
    expect(((await answer.json()) as { status: string }).status).toBe('queued'); // the run as it stands
    await s.done;
    const last = parseEventStream(s.state.text).at(-1)!;
    expect([last.event, (last.data as { code: string }).code]).toEqual(['error', 'RETORT_SHUTTING_DOWN']);
  });
});
