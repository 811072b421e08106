import http from 'node:http';
import https from 'node:https';
import { type PinnedAddress, pinnedLookup, resolvePublicAddress } from './addresses.js';
import { UriRefused } from './refusal.js';

export interface PinnedRequest {
  url: URL;
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Whether allowed hosts may resolve to non-public addresses. */
  allowPrivateAddresses?: boolean | undefined;
  /**
   * Everything (name lookup, connection, TLS, headers and body) must be done within this many ms;
   * past it, the request is torn down. A deadline, not an idle timeout: an endpoint that trickles
   * a byte a second cannot hold a request open.
   */
  deadlineMs: number;
  /** No byte for this long ends the request too (default: the deadline). */
  idleTimeoutMs?: number;
  /**
   * `discard`: only the status and headers are wanted; the socket is closed once they arrive, so a
   * body of any size or speed costs nothing. A number: the body is read, up to that many bytes.
   */
  answerBody: 'discard' | { maxBytes: number };
}

export interface PinnedResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body, when it was asked for. */
  body?: Uint8Array;
}

/** Node's connection errors, in words that say what happened without naming addresses. */
function describeNetworkError(e: unknown): string {
  const code = (e as { code?: string }).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    case 'ETIMEDOUT':
      return 'connection timed out';
    case 'EPIPE':
      return 'connection closed while sending';
    case undefined:
      return 'request failed';
    default:
      // TLS and HTTP parser errors have codes that name the problem (CERT_HAS_EXPIRED, HPE_…).
      return /^[A-Z0-9_]+$/.test(code) ? `request failed (${code})` : 'request failed';
  }
}

/**
 * The one outbound HTTP client: resolves the host once, refuses non-public addresses (unless
 * allowed), connects to the address it checked (no second lookup to re-point), follows no
 * redirects, and holds the whole exchange to a deadline. Errors are `UriRefused` with safe messages.
 */
export async function pinnedRequest(r: PinnedRequest): Promise<PinnedResponse> {
  const controller = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    controller.abort();
  }, r.deadlineMs);
  const late = () => new UriRefused(`no complete answer within ${r.deadlineMs} ms`);
  try {
    const pinned = await Promise.race([
      resolvePublicAddress(r.url.hostname, { allowPrivateAddresses: r.allowPrivateAddresses }),
      new Promise<never>((_, reject) =>
        controller.signal.addEventListener('abort', () => reject(late()), { once: true }),
      ),
    ]);
    return await send(r, pinned, controller.signal, () => (expired ? late() : null));
  } finally {
    clearTimeout(timer);
  }
}

function send(
  r: PinnedRequest,
  pinned: PinnedAddress,
  signal: AbortSignal,
  expiredError: () => UriRefused | null,
): Promise<PinnedResponse> {
  const idle = r.idleTimeoutMs ?? r.deadlineMs;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      reject(expiredError() ?? (e instanceof UriRefused ? e : new UriRefused(describeNetworkError(e))));
    };
    const req = (r.url.protocol === 'https:' ? https : http).request(
      r.url,
      {
        method: r.method,
        lookup: pinnedLookup(pinned),
        signal,
        timeout: idle,
        headers: {
          ...(r.body !== undefined
            ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(r.body)) }
            : {}),
          ...r.headers,
        },
      },
      (res) => {
        const head = { status: res.statusCode ?? 0, headers: res.headers };
        if (r.answerBody === 'discard') {
          settled = true;
          res.destroy(); // the answer's body is not read, whatever its size or pace
          resolve(head);
          return;
        }
        const max = r.answerBody.maxBytes;
        const declared = Number(res.headers['content-length'] ?? Number.NaN);
        if (declared > max) {
          fail(new UriRefused(`is ${declared} bytes, more than the ${max} this server reads`));
          res.destroy();
          return;
        }
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (part: Buffer) => {
          size += part.byteLength;
          if (size > max) {
            fail(new UriRefused(`is larger than the ${max} bytes this server reads`));
            res.destroy();
            return;
          }
          parts.push(part);
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          resolve({ ...head, body: Buffer.concat(parts) });
        });
        res.on('error', fail);
        res.on('aborted', () => fail(new UriRefused('the answer was cut off')));
      },
    );
    req.on('timeout', () => req.destroy(new UriRefused(`no data for ${Math.round(idle / 1000)} s`)));
    req.on('error', fail);
    req.end(r.body);
  });
}
