import { createHmac } from 'node:crypto';
import { claimDueDeliveries, type Db, type DueDelivery, recordDeliveryAttempt } from '@retort/db';
import { type AcceptSpec, type RunSummary, verdictOf } from '@retort/spec';
import { describeRefusal, pinnedRequest, type UriPolicy } from '@retort/uri-policy';

export interface WebhookSettings {
  /** How often the outbox is looked at, in ms. */
  pollMs: number;
  /** The wait after the first failure; it doubles after each one. */
  retryBaseMs: number;
  /** Attempts before a delivery is given up. */
  maxAttempts: number;
  /** How long an endpoint has to answer, all told (connection, TLS, status line and headers). */
  timeoutMs: number;
  /** Deliveries in flight at once from this process. */
  concurrency: number;
  /** Of those, the most for one team, so that a slow endpoint holds up only its own team. */
  concurrencyPerTeam: number;
}

export const SIGNATURE_HEADER = 'Retort-Signature';

/**
 * `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the webhook's secret>`. A receiver
 * recomputes v1 from the raw body and the t it was sent, compares in constant time, and refuses a
 * t more than five minutes old (so a captured delivery cannot be replayed later).
 */
export function sign(secret: string, body: string, t: number): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** The body of a delivery: the outbox payload and the run's verdict, the same on every attempt. */
export function deliveryBody(d: Pick<DueDelivery, 'id' | 'payload'>): string {
  const p = d.payload as {
    run: { status: string; accept?: AcceptSpec | null; summary: RunSummary | null } & Record<string, unknown>;
  } & Record<string, unknown>;
  const { accept, ...run } = p.run;
  return JSON.stringify({
    deliveryId: d.id.toString(),
    ...p,
    run: { ...run, verdict: verdictOf(run.status, accept ?? undefined, run.summary) },
  });
}

/**
 * Sends the outbox. Deliveries that are due are leased from Postgres and POSTed, signed, each on its
 * own: an attempt has a deadline for the whole exchange, the endpoint's answer body is never read,
 * and each attempt is recorded as soon as it ends, so one endpoint that answers slowly (or streams
 * without end) delays nothing but its own deliveries. Slots are shared fairly: no team has more
 * than `concurrencyPerTeam` in flight, and each claim takes the oldest due deliveries of every
 * team in turn. A failure (no answer in time, or not 2xx) is retried after retryBaseMs × 2^(n−1),
 * up to maxAttempts. The outbox is in Postgres, so a restart loses nothing, and several API
 * processes share it without sending a delivery twice at once.
 */
export class WebhookDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | undefined;
  private readonly inFlight = new Map<bigint, { teamId: string; done: Promise<void> }>();
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly policy: UriPolicy,
    private readonly s: WebhookSettings,
    private readonly log: { warn(o: object, m: string): void },
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops claiming and waits for the attempts in flight (each ends by its deadline). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.claiming;
    await Promise.all([...this.inFlight.values()].map((f) => f.done));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.fill(), ms);
  }

  /** Claims as many due deliveries as there are free slots and starts them. */
  private fill(): Promise<void> {
    if (this.claiming) return this.claiming;
    this.claiming = (async () => {
      try {
        const free = this.s.concurrency - this.inFlight.size;
        if (free <= 0 || this.stopped) return;
        const busy = new Map<string, number>();
        for (const f of this.inFlight.values()) busy.set(f.teamId, (busy.get(f.teamId) ?? 0) + 1);
        const due = await claimDueDeliveries(this.db, {
          limit: free,
          perTeam: this.s.concurrencyPerTeam,
          busy,
          leaseMs: Math.max(60_000, 2 * this.s.timeoutMs),
        });
        for (const d of due) {
          const done = this.attempt(d)
            .catch((e) =>
              this.log.warn({ delivery: d.id.toString(), err: String(e) }, 'webhook attempt failed'),
            )
            .finally(() => {
              this.inFlight.delete(d.id);
              this.schedule(0); // a slot is free: fill it now rather than at the next poll
            });
          this.inFlight.set(d.id, { teamId: d.teamId, done });
        }
      } catch (e) {
        this.log.warn({ err: String(e) }, 'webhook outbox: could not read it');
      } finally {
        this.claiming = undefined;
        this.schedule(this.s.pollMs);
      }
    })();
    return this.claiming;
  }

  private async attempt(d: DueDelivery): Promise<void> {
    const started = performance.now();
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      const body = deliveryBody(d);
      const res = await pinnedRequest({
        url: new URL(d.url),
        method: 'POST',
        headers: {
          'user-agent': 'Retort-Webhooks/1',
          'Retort-Event': d.event,
          'Retort-Delivery': d.id.toString(),
          [SIGNATURE_HEADER]: sign(d.secret, body, Math.floor(Date.now() / 1000)),
        },
        body,
        allowPrivateAddresses: this.policy.allowPrivateAddresses,
        deadlineMs: this.s.timeoutMs,
        answerBody: 'discard',
      });
      statusCode = res.status;
      if (statusCode < 200 || statusCode >= 300) error = `HTTP ${statusCode}`;
    } catch (e) {
      error = describeRefusal(e);
    }
    const ok = error === null;
    const n = d.attempts + 1;
    const retryAt =
      ok || n >= this.s.maxAttempts ? null : new Date(Date.now() + this.s.retryBaseMs * 2 ** (n - 1));
    try {
      await recordDeliveryAttempt(
        this.db,
        d.id,
        { statusCode, error, durationMs: Math.round(performance.now() - started), ok },
        retryAt,
      );
    } catch (e) {
      // The lease runs out and the delivery comes due again: sent twice rather than lost.
      this.log.warn({ delivery: d.id.toString(), err: String(e) }, 'webhook attempt not recorded');
    }
    if (!ok && !retryAt) this.log.warn({ delivery: d.id.toString(), error }, 'webhook delivery given up');
  }
}
