import type { ServerResponse } from 'node:http';
import { activeKeyIds, type Db, type KeyIdentity } from '@retort/db';
import { RetortError } from '@retort/spec';
import type { FastifyInstance } from 'fastify';

/** Why a long request was ended before its own time. */
export type EndReason = 'revoked' | 'shutting-down';

export interface LongRequest {
  /**
   * Aborted when the request should end early: its client left, its key was revoked, or the API
   * is stopping (`endedBy` says which).
   */
  readonly signal: AbortSignal;
  /** Why it was ended early, or null while it may go on. */
  endedBy(): EndReason | 'client-left' | null;
  close(): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Event streams and `?wait=true` requests: counted per key, ended on revocation and shutdown. */
    longRequests: LongRequests;
  }
}

const REVOCATION_CHECK_MS = 1000;

/**
 * The requests that stay open (event streams, waits). Each key may hold `perKey` at once in this
 * process; beyond that, 429. Every second the keys that hold any are looked up, and a revoked key's
 * requests end; on shutdown all of them end, so SIGTERM is not held up by a client that waits.
 */
export class LongRequests {
  private readonly open = new Map<string, Set<AbortController>>();
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private checking = false;

  constructor(
    private readonly db: Db,
    private readonly perKey: number,
    private readonly log: { warn(o: object, m: string): void },
  ) {}

  /** Holds a place for `identity`'s request answered on `response`; 429 beyond the key's share. */
  begin(identity: KeyIdentity, response: ServerResponse): LongRequest {
    if (this.closing)
      throw new RetortError('RETORT_SHUTTING_DOWN', 'This API process is stopping; try again.');
    const mine = this.open.get(identity.keyId) ?? new Set();
    if (mine.size >= this.perKey)
      throw new RetortError(
        'RETORT_RATE_LIMITED',
        `This key has ${mine.size} event streams or waits open, the most it may; close one first.`,
      );
    const ended = new AbortController();
    mine.add(ended);
    this.open.set(identity.keyId, mine);
    this.timer ??= setInterval(() => void this.checkRevoked(), REVOCATION_CHECK_MS);
    const left = () => {
      if (!ended.signal.aborted) ended.abort('client-left');
    };
    response.once('close', left);
    // A client that left before anyone listened has closed already.
    if (response.destroyed || response.socket?.destroyed) left();
    return {
      signal: ended.signal,
      endedBy: () => (ended.signal.aborted ? (ended.signal.reason as EndReason | 'client-left') : null),
      close: () => {
        response.removeListener('close', left);
        mine.delete(ended);
        if (mine.size === 0 && this.open.get(identity.keyId) === mine) this.open.delete(identity.keyId);
        if (this.open.size === 0) this.stopTimer();
      },
    };
  }

  /** How many are open (for /metrics and tests). */
  get size(): number {
    let n = 0;
    for (const s of this.open.values()) n += s.size;
    return n;
  }

  private async checkRevoked(): Promise<void> {
    // One check at a time: a slow Postgres must not gather a pile of them on the pool.
    if (this.checking) return;
    this.checking = true;
    const keys = [...this.open.keys()];
    let active: Set<string>;
    try {
      active = await activeKeyIds(this.db, keys);
    } catch (e) {
      // Postgres is down: the streams' own reads fail too and end them.
      this.log.warn({ err: String(e) }, 'could not check the keys of open streams');
      return;
    } finally {
      this.checking = false;
    }
    for (const k of keys)
      if (!active.has(k)) for (const c of this.open.get(k) ?? []) if (!c.signal.aborted) c.abort('revoked');
  }

  /** Ends every open request (shutdown) and refuses new ones. */
  endAll(): void {
    this.closing = true;
    for (const set of this.open.values())
      for (const c of set) if (!c.signal.aborted) c.abort('shutting-down');
    this.stopTimer();
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

export function registerLongRequests(app: FastifyInstance, db: Db, perKey: number): void {
  const registry = new LongRequests(db, perKey, app.log);
  app.decorate('longRequests', registry);
  // preClose runs before the server waits for its connections: streams and waits end now. Their
  // keep-alive connections (and those of requests that finish meanwhile) would then sit idle until
  // the keep-alive timeout; they are closed as soon as they are idle, so close can finish.
  let closer: NodeJS.Timeout | undefined;
  app.addHook('preClose', async () => {
    registry.endAll();
    closer = setInterval(() => app.server.closeIdleConnections?.(), 50);
  });
  app.addHook('onClose', async () => clearInterval(closer));
}

/** A sleep that ends early when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
