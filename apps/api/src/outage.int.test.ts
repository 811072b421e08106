import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bootstrapAdmin, createDb, migrate } from '@retort/db';
import { freePort, type LocalServer, startLocalPostgres } from '@retort/devstack';
import { createRedis, RunProducer } from '@retort/queue';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApp } from './app.js';

describe('while Postgres is unreachable', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'retort-outage-'));
  let port: number;
  let pg: LocalServer;
  let close: () => Promise<void>;
  let request: (
    url: string,
  ) => Promise<{ statusCode: number; headers: Record<string, unknown>; json(): { code?: string } }>;

  beforeAll(async () => {
    // A Postgres of this file's own, which it stops and starts.
    port = await freePort();
    pg = await startLocalPostgres({ dir, port, durable: false });
    await migrate(pg.url);
    const db = createDb(pg.url, { max: 2 });
    const key = randomBytes(16).toString('hex');
    await bootstrapAdmin(db, key);
    const redis = createRedis(inject('redisUrl'));
    const producer = new RunProducer(redis, `outage-${randomBytes(3).toString('hex')}`);
    const app = await buildApp({
      db,
      redis,
      producer,
      config: {
        adminKey: key,
        queuePrefix: producer.prefix,
        policy: { dataRoots: [], allowedHosts: [], allowPrivateAddresses: false },
        rateLimitPerMin: 100_000,
        eventsPollMs: 50,
        webhooks: { pollMs: 100, retryBaseMs: 200, maxAttempts: 5, timeoutMs: 5000 },
        submitChecksUris: false,
        bodyLimit: 1 << 20,
        workerStaleMs: 30_000,
      },
    });
    request = (url) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } });
    close = async () => {
      await app.close();
      await producer.close();
      redis.disconnect();
      await db.close();
    };
  });
  afterAll(async () => {
    await close();
    await pg.stop();
  });

  it('answers 503 with a code and Retry-After, and recovers when Postgres is back', async () => {
    expect((await request('/v1/runs')).statusCode).toBe(200);
    await pg.stop();
    const down = await request('/v1/runs');
    expect(down.statusCode).toBe(503);
    expect(down.json().code).toBe('RETORT_DEPENDENCY_UNAVAILABLE');
    expect(down.headers['retry-after']).toBe('5');
    const ready = await request('/readyz');
    expect(ready.statusCode).toBe(503);
    expect(ready.json().code).toBe('RETORT_DEPENDENCY_UNAVAILABLE');
    pg = await startLocalPostgres({ dir, port, durable: false });
    expect((await request('/v1/runs')).statusCode).toBe(200);
  });
});
