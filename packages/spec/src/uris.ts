import { lookup } from 'node:dns/promises';
import { realpath, stat } from 'node:fs/promises';
import { isIP, type LookupFunction } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ipaddr from 'ipaddr.js';
import { type ErrorDetail, RetortError } from './errors.js';
import type { RunSpec } from './run-spec.js';

/** Where a run may read from. Both apps read it from their environment. */
export interface UriPolicy {
  /** Absolute folders that `file://` URIs must resolve into (after following symlinks). */
  dataRoots: string[];
  /** Host names `http(s)://` URIs may name; empty means http(s) sources are refused. */
  allowedHosts: string[];
  /**
   * Whether allowed hosts may resolve to loopback, private, link-local or other non-public
   * addresses. Off by default: a name that points inside the cluster is refused.
   */
  allowPrivateAddresses?: boolean;
}

/** Ranges that are not the public internet: ipaddr.js's names for them. */
const PUBLIC = new Set(['unicast']);

/** Why an address may not be fetched from, or null when it is a public unicast address. */
export function nonPublicAddress(address: string): string | null {
  let a: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    a = ipaddr.process(address); // IPv4-mapped IPv6 becomes IPv4
  } catch {
    return 'not an IP address';
  }
  const range = a.range();
  return PUBLIC.has(range) ? null : range;
}

/**
 * The address to connect to for `host`: resolved once, every answer checked, so that a name cannot
 * point inside the network (or be re-pointed between the check and the connection: callers connect
 * to the address returned).
 */
export async function resolvePublicAddress(
  host: string,
  policy: UriPolicy,
  uri: string,
): Promise<{ address: string; family: number }> {
  const bare = host.replace(/^\[|\]$/g, '');
  let answers: { address: string; family: number }[];
  try {
    answers = isIP(bare) ? [{ address: bare, family: isIP(bare) }] : await lookup(bare, { all: true });
  } catch (e) {
    throw new RetortError(
      'RETORT_DATA_UNREADABLE',
      `${uri}: cannot resolve ${host} (${(e as Error).message})`,
    );
  }
  if (answers.length === 0) throw new RetortError('RETORT_DATA_UNREADABLE', `${uri}: ${host} has no address`);
  if (!policy.allowPrivateAddresses) {
    for (const a of answers) {
      const why = nonPublicAddress(a.address);
      if (why)
        throw new RetortError(
          'RETORT_DATA_UNREADABLE',
          `${uri}: ${host} resolves to ${a.address} (${why}), which this server does not fetch from`,
        );
    }
  }
  return answers[0]!;
}

/** Every URI in a spec, with the JSON Pointer of the field that holds it. */
export function specUris(spec: RunSpec): { path: string; uri: string }[] {
  const out: { path: string; uri: string }[] = [];
  if (spec.teacher && 'uri' in spec.teacher) out.push({ path: '/teacher/uri', uri: spec.teacher.uri });
  for (const [i, t] of (spec.teachers ?? []).entries())
    if ('uri' in t) out.push({ path: `/teachers/${i}/uri`, uri: t.uri });
  if ('uri' in spec.student) out.push({ path: '/student/uri', uri: spec.student.uri });
  const sets: [string, object][] = [
    ['/data/train', spec.data.train],
    ['/data/validation', spec.data.validation],
  ];
  if (spec.data.unlabeled) sets.push(['/data/unlabeled', spec.data.unlabeled]);
  for (const [at, set] of sets) {
    for (const key of ['images', 'labels', 'uri', 'features'] as const) {
      const v = (set as Record<string, unknown>)[key];
      if (typeof v === 'string' && /^(file|https?):/.test(v)) out.push({ path: `${at}/${key}`, uri: v });
    }
  }
  return out;
}

/**
 * Resolves a `file://` URI to a real path inside the data roots, or throws with a message the
 * user can act on. Symlinks are followed before the check, so a link cannot lead outside.
 */
export async function resolveFileUri(uri: string, policy: UriPolicy): Promise<string> {
  let p: string;
  try {
    p = fileURLToPath(uri);
  } catch {
    throw new RetortError('RETORT_DATA_UNREADABLE', `${uri} is not a valid file:// URI`);
  }
  let real: string;
  try {
    real = await realpath(p);
  } catch {
    throw new RetortError('RETORT_DATA_UNREADABLE', `${uri} does not exist`);
  }
  const roots = await Promise.all(policy.dataRoots.map((r) => realpath(r).catch(() => path.resolve(r))));
  if (!roots.some((r) => real === r || real.startsWith(r.endsWith(path.sep) ? r : r + path.sep))) {
    throw new RetortError(
      'RETORT_DATA_UNREADABLE',
      `${uri} is outside the allowed data roots (${policy.dataRoots.join(', ') || 'none configured'})`,
    );
  }
  const s = await stat(real);
  if (!s.isFile()) throw new RetortError('RETORT_DATA_UNREADABLE', `${uri} is not a regular file`);
  return real;
}

/** A `lookup` for node:http(s) that answers with the address already checked, never asking DNS again. */
export function pinnedLookup(pinned: { address: string; family: number }): LookupFunction {
  return (_host, options, callback) => {
    if ((options as { all?: boolean }).all) callback(null, [pinned]);
    else callback(null, pinned.address, pinned.family);
  };
}

/** Checks that an http(s) URI names an allowed host (its addresses are checked on connecting). */
export function checkHttpUri(uri: string, policy: UriPolicy): URL {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new RetortError('RETORT_DATA_UNREADABLE', `${uri} is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new RetortError('RETORT_DATA_UNREADABLE', `${uri}: only http and https are fetched`);
  if (url.username || url.password)
    throw new RetortError('RETORT_DATA_UNREADABLE', `${uri}: credentials in URLs are not accepted`);
  if (!policy.allowedHosts.includes(url.hostname)) {
    throw new RetortError(
      'RETORT_DATA_UNREADABLE',
      policy.allowedHosts.length === 0
        ? `${uri}: http(s) sources are disabled on this server (set RETORT_ALLOWED_HOSTS to allow hosts)`
        : `${uri}: host ${url.hostname} is not in the allowed hosts (${policy.allowedHosts.join(', ')})`,
    );
  }
  return url;
}

/** Checks that every URI in the spec is allowed and, for files, exists. One detail per bad URI. */
export async function checkSpecUris(spec: RunSpec, policy: UriPolicy): Promise<ErrorDetail[]> {
  const problems = await Promise.all(
    specUris(spec).map(async ({ path: at, uri }) => {
      try {
        if (uri.startsWith('file:')) await resolveFileUri(uri, policy);
        else await resolvePublicAddress(checkHttpUri(uri, policy).hostname, policy, uri);
        return null;
      } catch (e) {
        return { path: at, message: e instanceof Error ? e.message : String(e) };
      }
    }),
  );
  return problems.filter((p): p is ErrorDetail => p !== null);
}
