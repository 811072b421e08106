import { FencedOutError } from '@retort/db';
import type { Logger } from 'pino';

/** Connection failures of pg: Postgres is unreachable for now, not refusing what we asked. */
export function isOutage(e: unknown): boolean {
  if (e instanceof FencedOutError) return false;
  const code = String((e as { code?: unknown }).code ?? '');
  const msg = String((e as { message?: unknown }).message ?? e);
  return (
    [
      'ECONNREFUSED',
      'ECONNRESET',
      'ETIMEDOUT',
      'EPIPE',
      '57P01',
      '57P03',
      '08006',
      '08001',
      '08003',
    ].includes(code) ||
    /ECONNREFUSED|ECONNRESET|Connection terminated|timeout exceeded when trying to connect|the database system is (starting up|shutting down)|Can't reach database|Server has closed the connection/i.test(
      msg,
    )
  );
}

/**
 * Runs a write that must not be lost, retrying while Postgres is unreachable (with backoff, for up
 * to `maxMs`); any other error is thrown at once.
 */
export async function duringOutage<T>(write: () => Promise<T>, log: Logger, maxMs = 10 * 60_000): Promise<T> {
  const deadline = Date.now() + maxMs;
  for (let i = 0; ; i++) {
    try {
      return await write();
    } catch (e) {
      if (!isOutage(e) || Date.now() > deadline) throw e;
      if (i === 0) log.warn({ err: String(e) }, 'Postgres is unreachable; retrying until it is back');
      await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** i)));
    }
  }
}
