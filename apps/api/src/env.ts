import type { UriPolicy } from '@retort/uri-policy';
import envSchema from 'env-schema';
import Type, { type Static } from 'typebox';
import type { WebhookSettings } from './services/webhooks.js';

/** The API's configuration: every variable it reads, with its default. Parsed once at start. */
const Schema = Type.Object({
  /** Postgres, where runs, metrics and artifacts live. */
  DATABASE_URL: Type.String({ minLength: 1 }),
  /** Redis, for the run queues and control signals. */
  REDIS_URL: Type.String({ minLength: 1 }),
  /** The key that bootstraps the default team's admin access (sent as `Authorization: Bearer <key>`). */
  RETORT_ADMIN_KEY: Type.String({ minLength: 16 }),
  /** Address to listen on. */
  HOST: Type.String({ default: '127.0.0.1' }),
  /** Port to listen on. */
  PORT: Type.Integer({ default: 8080, minimum: 0, maximum: 65535 }),
  /** Prefix of every Redis key; must match the workers'. */
  RETORT_QUEUE_PREFIX: Type.String({ default: 'retort' }),
  /** Colon-separated folders that file:// URIs may point into. */
  RETORT_DATA_ROOTS: Type.String({ default: '/usr/share/datasets:/data' }),
  /** Comma-separated hosts that http(s):// URIs may name; empty refuses all. */
  RETORT_ALLOWED_HOSTS: Type.String({ default: '' }),
  /** Whether allowed hosts may resolve to loopback, private or link-local addresses. */
  RETORT_ALLOW_PRIVATE_ADDRESSES: Type.Boolean({ default: false }),
  /** Requests per minute each API key (or, without a key, each client address) may make. */
  RETORT_RATE_LIMIT_PER_MIN: Type.Integer({ default: 600, minimum: 1 }),
  /** Whether submitting a run checks that its file URIs exist (turn off when the API cannot see the data). */
  RETORT_SUBMIT_CHECKS_URIS: Type.Boolean({ default: true }),
  /** Largest request body accepted, in bytes. */
  RETORT_BODY_LIMIT: Type.Integer({ default: 1_048_576, minimum: 1024 }),
  /** Workers that have not reported within this many ms are not listed as live. */
  RETORT_WORKER_STALE_MS: Type.Integer({ default: 30_000, minimum: 1000 }),
  /** How often (ms) an event stream looks for new events. */
  RETORT_EVENTS_POLL_MS: Type.Integer({ default: 500, minimum: 10 }),
  /** How often (ms) the webhook outbox is looked at. */
  RETORT_WEBHOOK_POLL_MS: Type.Integer({ default: 1000, minimum: 10 }),
  /** The wait (ms) after a delivery's first failure; it doubles after each one. */
  RETORT_WEBHOOK_RETRY_BASE_MS: Type.Integer({ default: 30_000, minimum: 10 }),
  /** Attempts before a delivery is given up. */
  RETORT_WEBHOOK_MAX_ATTEMPTS: Type.Integer({ default: 8, minimum: 1, maximum: 50 }),
  /** How long (ms) a webhook endpoint has to answer, all told: connection, TLS, status and headers. */
  RETORT_WEBHOOK_TIMEOUT_MS: Type.Integer({ default: 10_000, minimum: 100 }),
  /** Webhook deliveries in flight at once from one API process. */
  RETORT_WEBHOOK_CONCURRENCY: Type.Integer({ default: 16, minimum: 1, maximum: 1000 }),
  /** Of those, the most for one team: a slow endpoint holds up only its own team's deliveries. */
  RETORT_WEBHOOK_CONCURRENCY_PER_TEAM: Type.Integer({ default: 4, minimum: 1, maximum: 1000 }),
  /** The most webhook endpoints one team may register. */
  RETORT_WEBHOOKS_PER_TEAM: Type.Integer({ default: 20, minimum: 1, maximum: 10_000 }),
  /** Event streams and `?wait=true` requests one API key may hold open at once, per API process. */
  RETORT_STREAMS_PER_KEY: Type.Integer({ default: 8, minimum: 1, maximum: 10_000 }),
  /** Failed authentications a minute from one client address before it gets 429. */
  RETORT_AUTH_FAILURES_PER_MIN: Type.Integer({ default: 30, minimum: 1 }),
  /** Postgres cancels an API statement that runs longer than this (ms). */
  RETORT_PG_STATEMENT_TIMEOUT_MS: Type.Integer({ default: 15_000, minimum: 100 }),
  /** A statement waits at most this long (ms) for a row lock, then the request answers 503. */
  RETORT_PG_LOCK_TIMEOUT_MS: Type.Integer({ default: 5000, minimum: 10 }),
  /** A Redis command (rate limits, queueing) that has no answer within this many ms fails. */
  RETORT_REDIS_TIMEOUT_MS: Type.Integer({ default: 1000, minimum: 10 }),
  /** On SIGTERM, how long (ms) requests in flight have to finish; streams and waits end at once. */
  RETORT_SHUTDOWN_GRACE_MS: Type.Integer({ default: 10_000, minimum: 0 }),
  /**
   * Which proxies' X-Forwarded-For to believe for the client's address (per-address limits, audit):
   * `true` (any), or comma-separated addresses, CIDRs or `loopback`/`linklocal`/`uniquelocal`.
   * Empty: none, the peer's own address counts.
   */
  RETORT_TRUST_PROXY: Type.String({ default: '' }),
  /** Log level: fatal, error, warn, info, debug, silent. */
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'silent'], { default: 'info' }),
});

export type ApiEnv = Static<typeof Schema>;

export interface ApiConfig {
  adminKey: string;
  /** Limits that keep one team (or one client) from stalling the others. */
  limits: {
    webhooksPerTeam: number;
    streamsPerKey: number;
    authFailuresPerMin: number;
  };
  /** Bounds on how long the API waits for Redis. */
  redisTimeoutMs: number;
  /** Fastify's trustProxy: whose X-Forwarded-For counts. */
  trustProxy: boolean | string[];
  queuePrefix: string;
  policy: UriPolicy;
  submitChecksUris: boolean;
  /** Requests per minute per API key (per address without one). */
  rateLimitPerMin: number;
  webhooks: WebhookSettings;
  /** How often an event stream looks for new events. */
  eventsPollMs: number;
  bodyLimit: number;
  workerStaleMs: number;
}

export function loadEnv(source: NodeJS.ProcessEnv = process.env): ApiEnv {
  return envSchema<ApiEnv>({ schema: Schema, data: source, dotenv: false });
}

export function configFrom(env: ApiEnv): ApiConfig {
  return {
    adminKey: env.RETORT_ADMIN_KEY,
    limits: {
      webhooksPerTeam: env.RETORT_WEBHOOKS_PER_TEAM,
      streamsPerKey: env.RETORT_STREAMS_PER_KEY,
      authFailuresPerMin: env.RETORT_AUTH_FAILURES_PER_MIN,
    },
    redisTimeoutMs: env.RETORT_REDIS_TIMEOUT_MS,
    trustProxy: trustedProxies(env.RETORT_TRUST_PROXY),
    queuePrefix: env.RETORT_QUEUE_PREFIX,
    policy: {
      dataRoots: env.RETORT_DATA_ROOTS.split(':').filter(Boolean),
      allowedHosts: env.RETORT_ALLOWED_HOSTS.split(',')
        .map((h) => h.trim())
        .filter(Boolean),
      allowPrivateAddresses: env.RETORT_ALLOW_PRIVATE_ADDRESSES,
    },
    submitChecksUris: env.RETORT_SUBMIT_CHECKS_URIS,
    rateLimitPerMin: env.RETORT_RATE_LIMIT_PER_MIN,
    eventsPollMs: env.RETORT_EVENTS_POLL_MS,
    webhooks: {
      pollMs: env.RETORT_WEBHOOK_POLL_MS,
      retryBaseMs: env.RETORT_WEBHOOK_RETRY_BASE_MS,
      maxAttempts: env.RETORT_WEBHOOK_MAX_ATTEMPTS,
      timeoutMs: env.RETORT_WEBHOOK_TIMEOUT_MS,
      concurrency: env.RETORT_WEBHOOK_CONCURRENCY,
      concurrencyPerTeam: env.RETORT_WEBHOOK_CONCURRENCY_PER_TEAM,
    },
    bodyLimit: env.RETORT_BODY_LIMIT,
    workerStaleMs: env.RETORT_WORKER_STALE_MS,
  };
}

function trustedProxies(value: string): boolean | string[] {
  if (value.trim() === 'true') return true;
  const list = value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  return list.length > 0 ? list : false;
}
