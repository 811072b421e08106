import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from './generated/prisma/client.js';

export interface Db {
  prisma: PrismaClient;
  /** The same pool Prisma uses, for the few statements Prisma cannot express (bulk upserts, bucketing). */
  pool: pg.Pool;
  close(): Promise<void>;
}

export interface DbOptions {
  /** Connections at most (default 10). */
  max?: number;
  applicationName?: string;
  /** Postgres cancels a statement that runs longer (ms; default 60 000). */
  statementTimeoutMs?: number;
  /** A statement waits at most this long for a lock (ms; default 5000), then fails with 55P03. */
  lockTimeoutMs?: number;
  /** Opening a connection may take this long (ms; default 3000). */
  connectTimeoutMs?: number;
}

/**
 * Opens a pool to Postgres. Every statement is bounded: on the server (statement_timeout,
 * lock_timeout, idle_in_transaction_session_timeout) and on the client (a query with no answer a
 * little after the statement timeout fails here too, for a server that no longer answers at all).
 */
export function createDb(databaseUrl: string, opts: DbOptions = {}): Db {
  const statementTimeout = opts.statementTimeoutMs ?? 60_000;
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.max ?? 10,
    application_name: opts.applicationName ?? 'retort',
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 3000,
    statement_timeout: statementTimeout,
    lock_timeout: opts.lockTimeoutMs ?? 5000,
    idle_in_transaction_session_timeout: statementTimeout * 2,
    query_timeout: statementTimeout + 2000,
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
