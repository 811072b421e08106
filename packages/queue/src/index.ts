export * from './catalog.js';
export { createRedis } from './connection.js';
export { type EnqueueRun, RunProducer } from './producer.js';
export { createRunWorker, type RunJobHandler, subscribeControl } from './worker.js';
