import { randomBytes } from 'node:crypto';
import { bootstrapAdmin, createDb, type Db, migrate } from '@retort/db';
import { freshDatabase, freshQueuePrefix } from '@retort/devstack';
import { createRedis, RunProducer } from '@retort/queue';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { buildApp } from './app.js';
import type { ApiConfig } from './env.js';

export interface TestApi {
  app: FastifyInstance;
  db: Db;
  redis: Redis;
  producer: RunProducer;
  adminKey: string;
  teamId: string;
  prefix: string;
  config: ApiConfig;
  auth: { authorization: string };
  close(): Promise<void>;
}

/** Settings for tests: fast polls and retries, limits out of the way unless a test sets them. */
export const TEST_CONFIG: Omit<ApiConfig, 'adminKey' | 'queuePrefix'> = {
  policy: { dataRoots: ['/usr/share/datasets'], allowedHosts: [], allowPrivateAddresses: false },
  submitChecksUris: true,
  rateLimitPerMin: 100_000,
  eventsPollMs: 50,
  webhooks: {
    pollMs: 100,
    retryBaseMs: 200,
    maxAttempts: 5,
    timeoutMs: 5000,
    concurrency: 16,
    concurrencyPerTeam: 4,
  },
  bodyLimit: 1 << 20,
  workerStaleMs: 30_000,
  limits: { webhooksPerTeam: 20, streamsPerKey: 8, authFailuresPerMin: 100_000 },
  redisTimeoutMs: 1000,
  trustProxy: false,
};

/** The API on a fresh database and its own Redis key prefix, for `app.inject()` tests. */
export async function testApi(
  serverUrl: string,
  redisUrl: string,
  label: string,
  config: Partial<ApiConfig> = {},
): Promise<TestApi> {
  const url = await freshDatabase(serverUrl, label);
  await migrate(url);
  const db = createDb(url, { max: 5 });
  const redis = createRedis(redisUrl, `test-${label}`, { commandTimeoutMs: 1000 });
  const prefix = freshQueuePrefix(label);
  const producer = new RunProducer(redis, prefix);
  const adminKey = `rk_test_${randomBytes(12).toString('hex')}`;
  const { teamId } = await bootstrapAdmin(db, adminKey);
  const apiConfig: ApiConfig = {
    ...TEST_CONFIG,
    adminKey,
    queuePrefix: prefix,
    ...config,
  };
  const app = await buildApp({ db, redis, producer, config: apiConfig });
  const t: TestApi = {
    app,
    config: apiConfig,
    db,
    redis,
    producer,
    adminKey,
    teamId,
    prefix,
    auth: { authorization: `Bearer ${adminKey}` },
    close: async () => {
      await t.app.close();
      await producer.close();
      redis.disconnect();
      await db.close();
    },
  };
  return t;
}
