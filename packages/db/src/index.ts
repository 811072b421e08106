export { createDb, type Db, FencedOutError } from './client.js';
export { MIGRATIONS_DIR, type MigrationResult, migrate } from './migrate.js';
export * from './repos/admin.js';
export * from './repos/artifacts.js';
export * from './repos/metrics.js';
export * from './repos/run-lifecycle.js';
export * from './repos/runs.js';
export * from './repos/teams.js';
export * from './repos/workers.js';
