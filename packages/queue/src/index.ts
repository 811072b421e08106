export * from './catalog.js';
export { createRedis, type RedisOptions } from './connection.js';
export { isRedisUnavailable } from './outage.js';
export { type EnqueueRun, RunProducer } from './producer.js';
export { createRunWorker, type RunJobHandler, subscribeControl } from './worker.js';
