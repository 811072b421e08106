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
  // The API's own statement timeout; a short lock timeout so that lock waits show in tests.
  const db = createDb(url, { max: 5, statementTimeoutMs: 15_000, lockTimeoutMs: 500 });
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

/** Ids for the routes' path parameters. */
export interface RouteIds {
  /** For the lifecycle POSTs (cancel, pause, …). */
  liveRun: string;
  /** For every other run route: one that has ended, so waits and streams end at once. */
  endedRun: string;
  artifact: string;
  team: string;
  key: string;
  webhook: string;
}

export interface SampleRoute {
  method: string;
  /** The path as OpenAPI documents it, e.g. `/v1/runs/{id}`. */
  template: string;
  url: string;
  /** A body the route accepts, for routes that take one. */
  body?: Record<string, unknown>;
}

const uniqueName = (p: string) => `${p}${randomBytes(4).toString('hex')}`;

/**
 * Every route the OpenAPI document lists, with its parameters filled in and, where it takes a
 * body, one it would accept: for tests that must cover every route (outages, hostile input).
 */
export function documentedRoutes(app: FastifyInstance, ids: RouteIds, runSpec: object): SampleRoute[] {
  const paths = (app.swagger() as { paths: Record<string, Record<string, unknown>> }).paths;
  const bodies: Record<string, () => Record<string, unknown>> = {
    'POST /v1/runs': () => ({ ...runSpec }),
    'POST /v1/admin/teams': () => ({ name: uniqueName('t') }),
    'PATCH /v1/admin/teams/{teamId}': () => ({ dataRoots: null }),
    'POST /v1/admin/teams/{teamId}/keys': () => ({ name: 'sample', scopes: ['runs:read'] }),
    'POST /v1/webhooks': () => ({ url: 'http://127.0.0.1:9/hook', events: ['run.failed'] }),
  };
  const out: SampleRoute[] = [];
  for (const [template, methods] of Object.entries(paths)) {
    for (const m of Object.keys(methods)) {
      const method = m.toUpperCase();
      const lifecycle = /\/(cancel|pause|resume|retry)$/.test(template);
      const url = template
        .replace(
          '{id}',
          template.startsWith('/v1/artifacts') ? ids.artifact : lifecycle ? ids.liveRun : ids.endedRun,
        )
        .replace('{file}', 'model.json')
        .replace('{teamId}', ids.team)
        .replace('{keyId}', ids.key)
        .replace('{webhookId}', ids.webhook);
      const body = bodies[`${method} ${template}`]?.();
      out.push({ method, template, url, ...(body ? { body } : {}) });
    }
  }
  return out;
}
