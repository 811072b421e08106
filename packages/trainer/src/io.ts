import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import {
  checkHttpUri,
  pinnedLookup,
  RetortError,
  resolveFileUri,
  resolvePublicAddress,
  type UriPolicy,
} from '@retort/spec';

/** How the trainer reads the bytes behind a URI. The worker and the CLI both use `policyByteSource`. */
export interface ByteSource {
  read(uri: string): Promise<Uint8Array>;
}

const MAX_REDIRECTS = 5;
const IDLE_TIMEOUT_MS = 60_000;

/**
 * Reads `file://` inside the data roots and `http(s)://` from allowed hosts, up to `maxBytes`.
 * An http(s) host's addresses are checked when it is resolved, and the connection goes to the
 * address that passed (no second lookup to re-point); every redirect is checked like the first
 * URI; a body longer than `maxBytes` (declared or counted) is cut off.
 */
export function policyByteSource(policy: UriPolicy, maxBytes = 2 * 1024 ** 3): ByteSource {
  return {
    async read(uri) {
      if (uri.startsWith('file:')) {
        const p = await resolveFileUri(uri, policy);
        return readFile(p);
      }
      let current = uri;
      for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        const res = await get(current, policy, maxBytes, uri);
        if ('location' in res) {
          current = new URL(res.location, current).toString();
          continue;
        }
        return res.body;
      }
      throw new RetortError('RETORT_DATA_UNREADABLE', `${uri}: more than ${MAX_REDIRECTS} redirects`);
    },
  };
}

/** One request: the body, or where a redirect points. */
async function get(
  uri: string,
  policy: UriPolicy,
  maxBytes: number,
  original: string,
): Promise<{ body: Uint8Array } | { location: string }> {
  const redirected = uri !== original;
  const where = redirected ? `${original} (redirected): ${uri}` : uri;
  let url: URL;
  try {
    url = checkHttpUri(uri, policy);
  } catch (e) {
    throw redirected && isRetort(e) ? new RetortError(e.code, `${original} (redirected): ${e.message}`) : e;
  }
  const pinned = await resolvePublicAddress(url.hostname, policy, where);
  const lookup = pinnedLookup(pinned);
  const fail = (message: string) => new RetortError('RETORT_DATA_UNREADABLE', `${where}: ${message}`);
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).get(
      url,
      { lookup, headers: { 'user-agent': 'retort', accept: '*/*' }, timeout: IDLE_TIMEOUT_MS },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400 && res.headers.location) {
          res.resume();
          resolve({ location: res.headers.location });
          return;
        }
        if (status < 200 || status >= 300) {
          res.resume();
          reject(fail(`HTTP ${status}`));
          return;
        }
        const declared = Number(res.headers['content-length'] ?? Number.NaN);
        if (declared > maxBytes) {
          res.destroy();
          reject(fail(`is ${declared} bytes, more than the ${maxBytes} this server downloads`));
          return;
        }
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (part: Buffer) => {
          size += part.byteLength;
          if (size > maxBytes) {
            res.destroy();
            reject(fail(`is larger than the ${maxBytes} bytes this server downloads`));
            return;
          }
          parts.push(part);
        });
        res.on('end', () => resolve({ body: Buffer.concat(parts) }));
        res.on('error', (e) => reject(fail(e.message)));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no data for ${IDLE_TIMEOUT_MS / 1000} s`)));
    req.on('error', (e) => reject(isRetort(e) ? e : fail(e.message)));
  });
}

const isRetort = (e: unknown): e is RetortError => e instanceof RetortError;
