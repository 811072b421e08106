import { Redis } from 'ioredis';

/**
 * A Redis connection for BullMQ. `maxRetriesPerRequest: null` is what BullMQ requires for workers
 * (blocking commands must wait out a reconnect rather than fail).
 */
export function createRedis(url: string, name = 'retort'): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false });
  // Connection errors surface through the commands that fail; without a listener ioredis logs each one.
  redis.on('error', () => {});
  return redis;
}
