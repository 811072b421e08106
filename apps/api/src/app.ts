import type { Db } from '@retort/db';
import type { RunProducer } from '@retort/queue';
import { RetortError } from '@retort/spec';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import type { Redis } from 'ioredis';
import type { ApiConfig } from './env.js';
import { registerAudit } from './plugins/audit.js';
import { registerAuth } from './plugins/auth.js';
import { registerErrorHandling } from './plugins/errors.js';
import { registerLongRequests } from './plugins/long-requests.js';
import { registerOpenApi } from './plugins/openapi.js';
import { rateLimiters } from './plugins/rate-limit.js';
import { registerValidation } from './plugins/validation.js';
import { adminRoutes } from './routes/admin.js';
import { eventRoutes } from './routes/events.js';
import { operationRoutes } from './routes/operations.js';
import { prometheusRoutes } from './routes/prometheus.js';
import { runDataRoutes } from './routes/run-data.js';
import { runRoutes } from './routes/runs.js';
import { webhookRoutes } from './routes/webhooks.js';
import { WebhookDispatcher } from './services/webhooks.js';

export interface AppDeps {
  db: Db;
  redis: Redis;
  producer: RunProducer;
  config: ApiConfig;
  logger?: FastifyServerOptions['logger'];
}

/**
 * Builds the API without opening a port (tests use `app.inject()`): plugins first (validation,
 * errors, auth, OpenAPI), then one module per route group.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: deps.logger ?? false,
    bodyLimit: deps.config.bodyLimit,
    // Per-address limits count the address a trusted proxy reports, or the peer's own.
    trustProxy: deps.config.trustProxy,
    // The router's own refusals, in Retort's error format like every other.
    frameworkErrors: (error, _request, reply) => {
      const e =
        error.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? new RetortError(
              'RETORT_NOT_FOUND',
              'Nothing here: an id in the path is longer than any this server issues.',
            )
          : new RetortError('RETORT_REQUEST_INVALID', 'The URL is malformed.');
      void (reply as FastifyReply).status(e.statusCode).send(e.toJSON());
    },
  });
  // Bodies are JSON only; anything else answers 415.
  app.removeContentTypeParser('text/plain');
  registerValidation(app);
  registerErrorHandling(app);
  registerAuth(
    app,
    deps.db,
    rateLimiters(deps.redis, {
      perMinute: deps.config.rateLimitPerMin,
      authFailuresPerMinute: deps.config.limits.authFailuresPerMin,
      prefix: deps.config.queuePrefix,
    }),
  );
  registerAudit(app, deps.db);
  registerLongRequests(app, deps.db, deps.config.limits.streamsPerKey);
  await registerOpenApi(app);
  const submit = {
    db: deps.db,
    producer: deps.producer,
    policy: deps.config.policy,
    checkUris: deps.config.submitChecksUris,
    redisTimeoutMs: deps.config.redisTimeoutMs,
    log: app.log,
  };
  runRoutes(app, submit);
  runDataRoutes(app, deps.db);
  adminRoutes(app, deps.db, deps.config.policy.dataRoots);
  webhookRoutes(app, deps.db, deps.config.policy, deps.config.limits.webhooksPerTeam);
  eventRoutes(app, deps.db, deps.config.eventsPollMs);
  prometheusRoutes(app, deps.db, deps.config.workerStaleMs);
  // The outbox is sent from every API process while it serves.
  const dispatcher = new WebhookDispatcher(deps.db, deps.config.policy, deps.config.webhooks, app.log);
  app.addHook('onReady', async () => dispatcher.start());
  app.addHook('onClose', async () => dispatcher.stop());
  operationRoutes(app, { db: deps.db, redis: deps.redis, workerStaleMs: deps.config.workerStaleMs });
  await app.ready();
  return app;
}
