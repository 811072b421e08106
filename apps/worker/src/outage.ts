import { isDatabaseUnavailable } from '@retort/db';
import type { Logger } from 'pino';

/** Postgres is unreachable (or timing out) for now, not refusing what we asked. Fencing is not an outage. */
export const isOutage = isDatabaseUnavailable;

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
