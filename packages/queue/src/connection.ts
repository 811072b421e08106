import { Redis } from 'ioredis';

export interface RedisOptions {
  /**
   * A command with no answer within this many ms fails, even one waiting for a connection (the
   * API's: a request must not hang while Redis is down). Default: none, as BullMQ workers need.
   */
  commandTimeoutMs?: number;
}

/**
 * A Redis connection. Without `commandTimeoutMs` it is what BullMQ requires for workers
 * (`maxRetriesPerRequest: null`: blocking commands wait out a reconnect rather than fail). With
 * it, commands are retried once across a reconnect and fail at the deadline: the API's
 * connection, which answers 503 or leaves work to the reconciler instead of waiting.
 */
export function createRedis(url: string, name = 'retort', opts: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    connectionName: name,
    lazyConnect: false,
    ...(opts.commandTimeoutMs !== undefined
      ? { maxRetriesPerRequest: 1, commandTimeout: opts.commandTimeoutMs }
      : { maxRetriesPerRequest: null }),
  });
  // Connection errors surface through the commands that fail; without a listener ioredis logs each one.
  redis.on('error', () => {});
  return redis;
}
