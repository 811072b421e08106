import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { claimDueDeliveries, type Db, type DueDelivery, recordDeliveryAttempt } from '@retort/db';
import {
  type AcceptSpec,
  pinnedLookup,
  type RunSummary,
  resolvePublicAddress,
  type UriPolicy,
  verdictOf,
} from '@retort/spec';

export interface WebhookSettings {
  /** How often the outbox is looked at, in ms. */
  pollMs: number;
  /** The wait after the first failure; it doubles after each one. */
  retryBaseMs: number;
  /** Attempts before a delivery is given up. */
  maxAttempts: number;
  /** How long an endpoint has to answer. */
  timeoutMs: number;
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

/** One POST to a webhook, to the address that passed the check; no redirects are followed. */
async function post(
  url: string,
  headers: Record<string, string>,
  body: string,
  policy: UriPolicy,
  timeoutMs: number,
): Promise<number> {
  const u = new URL(url);
  const pinned = await resolvePublicAddress(u.hostname, policy, url);
  const lookup = pinnedLookup(pinned);
  return new Promise((resolve, reject) => {
    const req = (u.protocol === 'https:' ? https : http).request(
      u,
      {
        method: 'POST',
        lookup,
        timeout: timeoutMs,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...headers,
        },
      },
      (res) => {
        res.resume(); // the answer's body is not kept
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Sends the outbox: every `pollMs` it leases the deliveries that are due, POSTs each, signed, and
 * records the attempt; a failure (no answer, or not 2xx) is retried after retryBaseMs × 2^(n−1),
 * up to maxAttempts. The outbox is in Postgres, so a restart loses nothing, and several API
 * processes share it without sending a delivery twice at once.
 */
export class WebhookDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly policy: UriPolicy,
    private readonly s: WebhookSettings,
    private readonly log: { warn(o: object, m: string): void },
  ) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.sendDue()
        .catch((e) => this.log.warn({ err: String(e) }, 'webhook outbox: could not read it'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.s.pollMs);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One pass over what is due; returns when every delivery it took has been tried. */
  async sendDue(): Promise<void> {
    for (;;) {
      const due = await claimDueDeliveries(this.db, 20, Math.max(60_000, 2 * this.s.timeoutMs));
      if (due.length === 0) return;
      await Promise.all(due.map((d) => this.attempt(d)));
      if (this.stopped) return;
    }
  }

  private async attempt(d: DueDelivery): Promise<void> {
    const body = deliveryBody(d);
    const started = performance.now();
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      statusCode = await post(
        d.url,
        {
          'user-agent': 'Retort-Webhooks/1',
          'Retort-Event': d.event,
          'Retort-Delivery': d.id.toString(),
          [SIGNATURE_HEADER]: sign(d.secret, body, Math.floor(Date.now() / 1000)),
        },
        body,
        this.policy,
        this.s.timeoutMs,
      );
      if (statusCode < 200 || statusCode >= 300) error = `HTTP ${statusCode}`;
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    const ok = error === null;
    const n = d.attempts + 1;
    const retryAt =
      ok || n >= this.s.maxAttempts ? null : new Date(Date.now() + this.s.retryBaseMs * 2 ** (n - 1));
    await recordDeliveryAttempt(
      this.db,
      d.id,
      { statusCode, error, durationMs: Math.round(performance.now() - started), ok },
      retryAt,
    );
    if (!ok && !retryAt) this.log.warn({ delivery: d.id.toString(), error }, 'webhook delivery given up');
  }
}
