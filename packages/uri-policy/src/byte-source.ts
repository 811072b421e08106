import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { type ByteSource, RetortError } from '@retort/spec';
import { pinnedRequest } from './pinned-client.js';
import { checkHttpUri, outsideRoots, resolveFileUri, type UriPolicy } from './policy.js';
import { UriRefused } from './refusal.js';

export interface ByteSourceOptions {
  /** The largest file a run may read, local or downloaded. Default 2 GiB. */
  maxBytes?: number;
  /** A download must be complete within this many ms. Default one hour. */
  downloadDeadlineMs?: number;
}

const MAX_REDIRECTS = 5;
const IDLE_TIMEOUT_MS = 60_000;

/**
 * Reads `file://` inside the data roots (the team's, when it has some) and `http(s)://` from
 * allowed hosts. Every read has a size cap; an http(s) host's addresses are checked when it is
 * resolved and the connection goes to the address that passed; every redirect is checked like the
 * first URI. Failures are `RETORT_DATA_UNREADABLE` naming the URI.
 */
export function policyByteSource(policy: UriPolicy, options: ByteSourceOptions = {}): ByteSource {
  const cap = options.maxBytes ?? 2 * 1024 ** 3;
  const deadlineMs = options.downloadDeadlineMs ?? 3_600_000;
  return {
    maxBytes: cap,
    async read(uri, readOptions = {}) {
      const asked = readOptions.maxBytes;
      // Whatever a caller asks, never more than the cap (an ask that is not a size gets the cap).
      const maxBytes =
        asked !== undefined && Number.isFinite(asked) && asked >= 0 ? Math.min(cap, asked) : cap;
      try {
        return uri.startsWith('file:')
          ? await readFileCapped(uri, policy, maxBytes)
          : await download(uri, policy, maxBytes, deadlineMs);
      } catch (e) {
        if (e instanceof UriRefused) throw new RetortError('RETORT_DATA_UNREADABLE', `${uri} ${e.message}`);
        throw e;
      }
    },
  };
}

async function readFileCapped(uri: string, policy: UriPolicy, maxBytes: number): Promise<Uint8Array> {
  const path = await resolveFileUri(uri, policy);
  // Non-blocking (a FIFO swapped in cannot hold the open) and not through a final symlink.
  const file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW).catch(
    () => {
      throw new UriRefused('cannot be opened');
    },
  );
  try {
    // What was opened is checked, not what was looked at: a path swapped between the check and
    // the open (a directory replaced by a link into another team's folder) is refused here.
    const opened = await realpath(`/proc/self/fd/${file.fd}`).catch(() => path);
    const outside = await outsideRoots(opened, policy);
    if (outside) throw new UriRefused(`changed while it was opened and now leads outside the data roots`);
    const stats = await file.stat();
    if (!stats.isFile()) throw new UriRefused('is not a regular file');
    // The size is read from the open file, so a file swapped after the check is still capped.
    const { size } = stats;
    if (size > maxBytes)
      throw new UriRefused(`is ${size} bytes, more than the ${maxBytes} this server reads`);
    const bytes = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await file.read(bytes, off, size - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return bytes.subarray(0, off);
  } finally {
    await file.close();
  }
}

async function download(uri: string, policy: UriPolicy, maxBytes: number, deadlineMs: number) {
  const deadline = Date.now() + deadlineMs;
  let current = uri;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const redirected = current !== uri;
    try {
      const res = await pinnedRequest({
        url: checkHttpUri(current, policy),
        method: 'GET',
        headers: { 'user-agent': 'retort', accept: '*/*' },
        allowPrivateAddresses: policy.allowPrivateAddresses,
        deadlineMs: Math.max(1, deadline - Date.now()),
        idleTimeoutMs: IDLE_TIMEOUT_MS,
        answerBody: { maxBytes },
      });
      if (res.status >= 300 && res.status < 400 && res.headers.location) {
        current = new URL(res.headers.location, current).toString();
        continue;
      }
      if (res.status < 200 || res.status >= 300) throw new UriRefused(`answered HTTP ${res.status}`);
      return res.body!;
    } catch (e) {
      if (redirected && e instanceof UriRefused)
        throw new UriRefused(`(redirected to ${current}) ${e.message}`);
      throw e;
    }
  }
  throw new UriRefused(`redirects more than ${MAX_REDIRECTS} times`);
}
