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
const db = createDb(env.DATABASE_URL, { applicationName: 'retort-api' });
const redis = createRedis(env.REDIS_URL, 'retort-api');
const producer = new RunProducer(redis, config.queuePrefix);
await bootstrapAdmin(db, config.adminKey);

const app = await buildApp({ db, redis, producer, config, logger: { level: env.LOG_LEVEL } });
await app.listen({ host: env.HOST, port: env.PORT });

let closing = false;
async function shutdown(signal: string) {
  if (closing) return;
  closing = true;
  app.log.info({ signal }, 'shutting down: finishing requests in flight');
  await app.close(); // stops accepting, waits for in-flight requests
  await producer.close();
  redis.disconnect();
  await db.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
