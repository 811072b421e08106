import { FencedOutError } from './client.js';

/**
 * SQLSTATEs and Node error codes that mean Postgres cannot serve us right now (down, restarting,
 * overloaded, or a statement that ran into a timeout or a lock wait), not that it refused what we
 * asked: retrying later can succeed.
 */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '57014', // query_canceled (statement_timeout)
  '55P03', // lock_not_available (lock_timeout)
  '53300', // too_many_connections
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  'P1001', // Prisma: can't reach database server
  'P1002', // Prisma: server timed out
  'P1017', // Prisma: server closed the connection
  'P2024', // Prisma: timed out fetching a connection from the pool
]);

const UNAVAILABLE_MESSAGES =
  /ECONNREFUSED|ECONNRESET|Connection terminated|timeout exceeded when trying to connect|Query read timeout|the database system is (starting up|shutting down|in recovery mode)|Can't reach database|Server has closed the connection|canceling statement due to (statement|lock) timeout|terminating connection due to administrator command/i;

/** Whether `e` (or what it wraps) says Postgres is unavailable for now. Fencing is never an outage. */
export function isDatabaseUnavailable(e: unknown): boolean {
  for (let cur: unknown = e, depth = 0; cur && depth < 6; depth++) {
    if (cur instanceof FencedOutError) return false;
    const o = cur as {
      code?: unknown;
      message?: unknown;
      cause?: unknown;
      originalCode?: unknown;
      meta?: { driverAdapterError?: unknown };
    };
    if (UNAVAILABLE_CODES.has(String(o.code ?? '')) || UNAVAILABLE_CODES.has(String(o.originalCode ?? '')))
      return true;
    if (UNAVAILABLE_MESSAGES.test(String(o.message ?? ''))) return true;
    cur = o.cause ?? o.meta?.driverAdapterError;
  }
  return false;
}
