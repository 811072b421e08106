import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from './generated/prisma/client.js';

export interface Db {
  prisma: PrismaClient;
  /** The same pool Prisma uses, for the few statements Prisma cannot express (bulk upserts, bucketing). */
  pool: pg.Pool;
  close(): Promise<void>;
}

/** Opens a pool to Postgres. `max` bounds connections (default 10). */
export function createDb(databaseUrl: string, opts: { max?: number; applicationName?: string } = {}): Db {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.max ?? 10,
    application_name: opts.applicationName ?? 'retort',
    connectionTimeoutMillis: 5000,
  });
  // An idle client that loses its server emits here; without a listener the process would crash.
  pool.on('error', () => {});
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    prisma,
    pool,
    close: async () => {
      await prisma.$disconnect();
      await pool.end().catch(() => {});
    },
  };
}

/** Thrown when a worker writes for an attempt that is no longer the run's current one. */
export class FencedOutError extends Error {
  constructor(
    readonly runId: string,
    readonly attempt: number,
    what: string,
  ) {
    super(`write refused: run ${runId} is no longer held by attempt ${attempt} (${what})`);
    this.name = 'FencedOutError';
  }
}
