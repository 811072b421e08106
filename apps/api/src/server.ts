import { bootstrapAdmin, createDb } from '@retort/db';
import { createRedis, RunProducer } from '@retort/queue';
import { buildApp } from './app.js';
import { type ApiEnv, configFrom, loadEnv } from './env.js';

let env: ApiEnv;
try {
  env = loadEnv();
} catch (e) {
  console.error(`retort-api: bad configuration: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
}

const config = configFrom(env);
const db = createDb(env.DATABASE_URL, {
  applicationName: 'retort-api',
  statementTimeoutMs: env.RETORT_PG_STATEMENT_TIMEOUT_MS,
  lockTimeoutMs: env.RETORT_PG_LOCK_TIMEOUT_MS,
});
// Commands fail after RETORT_REDIS_TIMEOUT_MS rather than wait for Redis: requests stay bounded.
const redis = createRedis(env.REDIS_URL, 'retort-api', { commandTimeoutMs: env.RETORT_REDIS_TIMEOUT_MS });
const producer = new RunProducer(redis, config.queuePrefix);
const admin = await bootstrapAdmin(db, config.adminKey);

const app = await buildApp({ db, redis, producer, config, logger: { level: env.LOG_LEVEL } });
if (admin.revoked)
  app.log.warn(
    'the key in RETORT_ADMIN_KEY was revoked and stays revoked; set a new RETORT_ADMIN_KEY to bootstrap an admin key',
  );
await app.listen({ host: env.HOST, port: env.PORT });

let closing = false;
async function shutdown(signal: string) {
  if (closing) return;
  closing = true;
  app.log.info({ signal }, 'shutting down: streams and waits end now, requests in flight may finish');
  // Whatever is still open after the grace period is not waited for.
  setTimeout(() => {
    app.log.warn('requests still open after RETORT_SHUTDOWN_GRACE_MS; exiting');
    process.exit(0);
  }, env.RETORT_SHUTDOWN_GRACE_MS).unref();
  await app.close(); // ends streams and waits, stops accepting, waits for requests in flight
  await producer.close().catch(() => {});
  redis.disconnect();
  await db.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
