export { createDatabase, findPostgresBin, type LocalServer, startLocalPostgres } from './postgres.js';
export { commandExists, freePort, isRoot, waitFor } from './processes.js';
export { startLocalRedis } from './redis.js';
export { REPO_ROOT, type RetortStack, type RetortStackOptions, startRetort } from './retort.js';
export {
  ensureDebianPackages,
  FASHION_MNIST_DIR,
  provideServices,
  type Services,
  STACK_PACKAGES,
} from './services.js';
export {
  fashionMnistData,
  freshDatabase,
  freshQueuePrefix,
  parseEventStream,
  type ServerSentEvent,
} from './testing.js';
