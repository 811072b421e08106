import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import { requestCancel } from '@retort/db';
import { fashionMnistData } from '@retort/devstack';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApp } from '../app.js';
import { type TestApi, testApi } from '../testing.js';

const runSpec = {
  name: 'hooked',
  kind: 'train',
  student: { preset: 'mlp', hidden: [8] },
  data: { train: fashionMnistData(100).train },
  training: { epochs: 1 },
};

/** The receiver's side, as the README documents it. */
function verify(secret: string, header: string, body: string, now = Date.now() / 1000): boolean {
  const parts = Object.fromEntries(header.split(',').map((kv) => kv.split('=') as [string, string]));
  const t = Number(parts.t);
  if (!Number.isFinite(t) || Math.abs(now - t) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  const given = Buffer.from(parts.v1 ?? '', 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

describe('webhooks', () => {
  let t: TestApi;
  let receiver: Server;
  let url: string;
  /** What the receiver got, and how it answers each request in turn (then 200). */
  const received: { headers: IncomingHttpHeaders; body: string }[] = [];
  let answers: number[] = [];

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c;
      });
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(answers.shift() ?? 200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'webhooks_api', {
      policy: { dataRoots: ['/usr/share/datasets'], allowedHosts: [], allowPrivateAddresses: true },
    });
  });
  afterAll(async () => {
    await t.close();
    receiver.close();
  });

  const call = (method: 'GET' | 'POST' | 'DELETE', path: string, payload?: object, key?: string) =>
    t.app.inject({
      method,
      url: path,
      headers: key ? { authorization: `Bearer ${key}` } : t.auth,
      ...(payload ? { payload } : {}),
    });

  it('signs every delivery, and retries one that fails twice until the third try lands', async () => {
    const hook = await call('POST', '/v1/webhooks', { url, events: ['run.canceled'], description: 'CI' });
    expect(hook.statusCode).toBe(201);
    const { id, secret } = hook.json();
    expect(secret).toMatch(/^whsec_/);
    expect(JSON.stringify((await call('GET', '/v1/webhooks')).json())).not.toContain(secret);

    answers = [500, 503];
    received.length = 0;
    const run = (await call('POST', '/v1/runs', runSpec)).json();
    expect((await call('POST', `/v1/runs/${run.id}/cancel`)).statusCode).toBe(200);
    await expect.poll(() => received.length, { timeout: 10_000 }).toBe(3);

    for (const r of received) {
      expect(r.headers['retort-event']).toBe('run.canceled');
      expect(verify(secret, r.headers['retort-signature'] as string, r.body)).toBe(true);
      expect(verify('whsec_wrong', r.headers['retort-signature'] as string, r.body)).toBe(false);
      expect(verify(secret, r.headers['retort-signature'] as string, `${r.body} `)).toBe(false);
    }
    // The same delivery each time, byte for byte.
    expect(new Set(received.map((r) => r.body)).size).toBe(1);
    expect(new Set(received.map((r) => r.headers['retort-delivery'])).size).toBe(1);
    const body = JSON.parse(received[0]!.body);
    expect(body).toMatchObject({
      event: 'run.canceled',
      run: {
        id: run.id,
        name: 'hooked',
        status: 'canceled',
        verdict: { passed: false, reason: 'the run canceled' },
      },
      data: { status: 'canceled' },
    });

    await expect
      .poll(async () => (await call('GET', `/v1/webhooks/${id}/deliveries`)).json().items[0]?.status, {
        timeout: 5000,
      })
      .toBe('delivered');
    const [delivery] = (await call('GET', `/v1/webhooks/${id}/deliveries`)).json().items;
    expect(delivery).toMatchObject({ event: 'run.canceled', runId: run.id, nextAttemptAt: null });
    expect(delivery.attempts.map((a: { statusCode: number }) => a.statusCode)).toEqual([500, 503, 200]);
    // Backoff: the second wait is about twice the first (retry base 200 ms in tests).
    const at = delivery.attempts.map((a: { at: string }) => Date.parse(a.at));
    expect(at[1] - at[0]).toBeGreaterThanOrEqual(190);
    expect(at[2] - at[1]).toBeGreaterThanOrEqual(390);
  });

  it('loses nothing while no API process runs: the outbox is sent when one starts', async () => {
    const hook = (await call('POST', '/v1/webhooks', { url, events: ['run.canceled'] })).json();
    const run = (await call('POST', '/v1/runs', runSpec)).json();
    await t.app.close(); // no API process, no dispatcher
    received.length = 0;
    await requestCancel(t.db, t.teamId, run.id); // a worker or another process records the event
    await new Promise((r) => setTimeout(r, 500));
    expect(received).toHaveLength(0);
    t.app = await buildApp({ db: t.db, redis: t.redis, producer: t.producer, config: t.config });
    await expect
      .poll(() => received.filter((r) => r.body.includes(run.id)).length, { timeout: 10_000 })
      .toBeGreaterThan(0);
    const deliveries = (await call('GET', `/v1/webhooks/${hook.id}/deliveries`)).json().items;
    expect(deliveries.map((d: { runId: string }) => d.runId)).toContain(run.id);
  });

  it('refuses URLs inside the network (unless configured) and keeps teams apart', async () => {
    const strict = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'webhooks_strict');
    try {
      for (const bad of [
        'http://127.0.0.1:9/x',
        'http://169.254.169.254/latest',
        'ftp://example.com/x',
        'http://u:p@example.com/',
      ]) {
        const res = await strict.app.inject({
          method: 'POST',
          url: '/v1/webhooks',
          headers: strict.auth,
          payload: { url: bad, events: ['run.failed'] },
        });
        expect([bad, res.statusCode, res.json().code]).toEqual([bad, 400, 'RETORT_REQUEST_INVALID']);
        expect(res.json().details[0].path).toBe('/body/url');
      }
      const unknown = await strict.app.inject({
        method: 'POST',
        url: '/v1/webhooks',
        headers: strict.auth,
        payload: { url: 'http://example.com/', events: ['run.exploded'] },
      });
      expect(unknown.statusCode).toBe(400);
    } finally {
      await strict.close();
    }
    const hook = (await call('POST', '/v1/webhooks', { url, events: ['run.failed'] })).json();
    const other = (await call('POST', '/v1/admin/teams', { name: 'others' })).json();
    const key = (
      await call('POST', `/v1/admin/teams/${other.id}/keys`, {
        name: 'o',
        scopes: ['runs:read', 'runs:write'],
      })
    ).json().key;
    expect((await call('GET', `/v1/webhooks/${hook.id}/deliveries`, undefined, key)).statusCode).toBe(404);
    expect((await call('DELETE', `/v1/webhooks/${hook.id}`, undefined, key)).statusCode).toBe(404);
    expect((await call('GET', '/v1/webhooks', undefined, key)).json().items).toEqual([]);
    expect((await call('DELETE', `/v1/webhooks/${hook.id}`)).statusCode).toBe(204);
  });
});

/** Endpoints that never answer, answer a byte at a time, or stream without end stall nobody else. */
describe('webhook endpoints cannot stall the outbox', () => {
  let t: TestApi;
  const servers: { close(): void }[] = [];
  /** A TCP endpoint; `onSocket` decides what it does with each connection. */
  const endpoint = async (onSocket: (s: Socket) => void) => {
    const sockets = new Set<Socket>();
    const accepted: number[] = [];
    const server = createNetServer((s) => {
      accepted.push(performance.now());
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
      onSocket(s);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push({
      close: () => {
        server.close();
        for (const s of sockets) s.destroy();
      },
    });
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
      open: () => sockets.size,
      accepted,
    };
  };

  beforeAll(async () => {
    t = await testApi(inject('postgresServerUrl'), inject('redisUrl'), 'webhooks_stall', {
      policy: { dataRoots: ['/usr/share/datasets'], allowedHosts: [], allowPrivateAddresses: true },
      webhooks: {
        pollMs: 50,
        retryBaseMs: 60_000,
        maxAttempts: 1,
        timeoutMs: 1500,
        concurrency: 4,
        concurrencyPerTeam: 2,
      },
      limits: { webhooksPerTeam: 20, streamsPerKey: 8, authFailuresPerMin: 1000 },
    });
  });
  afterAll(async () => {
    await t.close();
    for (const s of servers) s.close();
  });

  const call = (method: 'GET' | 'POST', path: string, payload?: object, key?: string) =>
    t.app.inject({
      method,
      url: path,
      headers: key ? { authorization: `Bearer ${key}` } : t.auth,
      ...(payload ? { payload } : {}),
    });
  const canceledRun = async (key?: string) => {
    const run = (await call('POST', '/v1/runs', runSpec, key)).json();
    await call('POST', `/v1/runs/${run.id}/cancel`, undefined, key);
    return run.id as string;
  };
  const deliveries = async (hookId: string, key?: string) =>
    (await call('GET', `/v1/webhooks/${hookId}/deliveries`, undefined, key)).json().items as {
      status: string;
      attempts: { statusCode: number | null; error: string | null }[];
    }[];

  it('a slow team holds up only its own deliveries; every attempt ends by its deadline', async () => {
    const hang = await endpoint(() => {}); // reads, never answers
    const dribble = await endpoint((s) => {
      // The status line a byte at a time: an idle timeout never fires.
      const head = 'HTTP/1.1 200 OK\r\n';
      let i = 0;
      const timer = setInterval(() => (i < head.length ? s.write(head[i++]!) : s.write('X')), 100);
      s.on('close', () => clearInterval(timer));
    });
    const stream = await endpoint((s) => {
      // A 200 at once, then a body without end: the status is the answer; the body is not read.
      s.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n');
      const timer = setInterval(() => s.write('y'.repeat(1024)), 5);
      s.on('close', () => clearInterval(timer));
    });
    const slowHooks: string[] = [];
    for (const e of [hang, dribble, stream])
      slowHooks.push(
        (await call('POST', '/v1/webhooks', { url: e.url, events: ['run.canceled'] })).json().id,
      );
    // A backlog of this team's deliveries: more than its share of slots.
    for (let i = 0; i < 4; i++) await canceledRun();
    await expect.poll(() => hang.open() + dribble.open()).toBeGreaterThan(0);

    // Another team, with an endpoint that answers at once.
    const other = (await call('POST', '/v1/admin/teams', { name: 'prompt' })).json();
    const key = (
      await call('POST', `/v1/admin/teams/${other.id}/keys`, {
        name: 'p',
        scopes: ['runs:read', 'runs:write'],
      })
    ).json().key;
    let got = 0;
    const fast = createServer((req, res) => {
      got++;
      req.resume();
      res.end();
    });
    await new Promise<void>((r) => fast.listen(0, '127.0.0.1', r));
    servers.push({ close: () => fast.close() });
    const fastHook = (
      await call(
        'POST',
        '/v1/webhooks',
        { url: `http://127.0.0.1:${(fast.address() as AddressInfo).port}/`, events: ['run.canceled'] },
        key,
      )
    ).json().id;
    await canceledRun(key);
    // Delivered and recorded while the slow team's first attempts are still hanging.
    await expect
      .poll(async () => (await deliveries(fastHook, key))[0]?.status, { timeout: 5000 })
      .toBe('delivered');
    expect(got).toBe(1);
    const pendingSlow = (await deliveries(slowHooks[0]!)).filter((d) => d.status === 'pending');
    expect(pendingSlow.length).toBeGreaterThan(0);

    // Every attempt ends by its deadline; the endless body counted as the 200 it began with.
    await expect
      .poll(
        async () =>
          (await Promise.all(slowHooks.map((h) => deliveries(h))))
            .flat()
            .every((d) => d.status !== 'pending'),
        {
          timeout: 60_000,
          interval: 250,
        },
      )
      .toBe(true);
    const [hung, dribbled, streamed] = await Promise.all(slowHooks.map((h) => deliveries(h)));
    for (const d of [...hung!, ...dribbled!])
      expect([d.status, d.attempts[0]!.error]).toEqual(['failed', 'no complete answer within 1500 ms']);
    for (const d of streamed!) expect([d.status, d.attempts[0]!.statusCode]).toEqual(['delivered', 200]);
    // The slow team never had more than its share (2) in flight. Each attempt on these endpoints
    // lasts its whole deadline (1.5 s), so a slot starts at most one of them in any 1.2 s: more than
    // two starts in such a window would mean more than two in flight.
    const starts = [...hang.accepted, ...dribble.accepted].sort((x, y) => x - y);
    const busiest = Math.max(...starts.map((t0) => starts.filter((t1) => t1 >= t0 && t1 < t0 + 1200).length));
    expect(busiest).toBeLessThanOrEqual(2);
    expect(starts.length).toBe(8); // 4 runs × the two endpoints that never answer
  }, 90_000);
});
