import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { ensureDebianPackages, provideServices, STACK_PACKAGES } from './services.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A Postgres server URL; each test file creates its own database on it. */
    postgresServerUrl: string;
    /** A Redis URL; each test file uses its own key prefix. */
    redisUrl: string;
  }
}

/**
 * Provides real Postgres and Redis to the whole test run (CONVENTIONS.md): DATABASE_URL and
 * REDIS_URL when set, else containers when a Docker engine answers, else local server binaries in a
 * temporary folder. Stopped when the run ends.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const missing = await ensureDebianPackages(STACK_PACKAGES, (m) => console.log(`[devstack] ${m}`));
  if (missing.length > 0) throw new Error(`tests need Debian packages: ${missing.join(' ')}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'retort-test-'));
  // The postgres user (when we run as root) must be able to reach its data folder inside.
  chmodSync(dir, 0o755);
  const services = await provideServices({ dir, durable: false, log: (m) => console.log(`[devstack] ${m}`) });
  project.provide('postgresServerUrl', services.databaseUrl);
  project.provide('redisUrl', services.redisUrl);
  return async () => {
    await services.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
