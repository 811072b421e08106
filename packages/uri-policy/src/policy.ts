import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ErrorDetail, type RunSpec, specUris } from '@retort/spec';
import { resolvePublicAddress } from './addresses.js';
import { UriRefused } from './refusal.js';

/** Where a run may read from. Both apps read the global part from their environment. */
export interface UriPolicy {
  /** Absolute folders that `file://` URIs must resolve into (after following symlinks): `RETORT_DATA_ROOTS`. */
  dataRoots: string[];
  /**
   * The team's own folders, inside `dataRoots`; when set, a `file://` URI must resolve into one of
   * these as well. Absent (or null): the whole of `dataRoots`.
   */
  teamRoots?: string[] | null | undefined;
  /** Host names `http(s)://` URIs may name; empty means http(s) sources are refused. */
  allowedHosts: string[];
  /**
   * Whether allowed hosts may resolve to loopback, private, link-local or other non-public
   * addresses. Off by default: a name that points inside the cluster is refused.
   */
  allowPrivateAddresses?: boolean | undefined;
}

/** The policy for one team's runs: the global one narrowed to the team's data roots (null: all of them). */
export function policyForTeam(global: UriPolicy, teamRoots: string[] | null | undefined): UriPolicy {
  return { ...global, teamRoots: teamRoots ?? null };
}

const within = (p: string, root: string) =>
  p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);

/**
 * Checks team data roots as an operator gives them: absolute folders inside the global roots.
 * Returns them normalised, or one problem per bad entry (at `at/<index>`). Symlinks are resolved
 * again when a run reads, so a root that is a link out of the global roots reads nothing.
 */
export function checkTeamRoots(
  roots: string[],
  globalRoots: string[],
  at: string,
): { roots: string[]; problems: ErrorDetail[] } {
  const problems: ErrorDetail[] = [];
  const out: string[] = [];
  const global = globalRoots.map((r) => path.resolve(r));
  for (const [i, r] of roots.entries()) {
    if (!path.isAbsolute(r) || r.includes('\0')) {
      problems.push({ path: `${at}/${i}`, message: 'must be an absolute folder path' });
      continue;
    }
    const norm = path.resolve(r);
    if (!global.some((g) => within(norm, g))) {
      problems.push({
        path: `${at}/${i}`,
        message: `is not inside the server's data roots (${globalRoots.join(', ') || 'none configured'})`,
      });
      continue;
    }
    if (!out.includes(norm)) out.push(norm);
  }
  return { roots: out, problems };
}

/** Each root as given and as its real path (a root may itself be a link, /data → /mnt/data). */
async function rootForms(roots: string[]): Promise<string[][]> {
  return Promise.all(
    roots.map(async (r) => {
      const given = path.resolve(r);
      const real = await realpath(r).catch(() => given);
      return real === given ? [given] : [given, real];
    }),
  );
}

/**
 * Which roots `p` falls outside: `server` (RETORT_DATA_ROOTS), `team` (the team's own), or null.
 * A team root counts only where it lies inside a server root.
 */
export async function outsideRoots(p: string, policy: UriPolicy): Promise<'server' | 'team' | null> {
  const server = (await rootForms(policy.dataRoots)).flat();
  if (!server.some((r) => within(p, r))) return 'server';
  if (policy.teamRoots) {
    const team = (await rootForms(policy.teamRoots)).flat().filter((t) => server.some((g) => within(t, g)));
    if (!team.some((r) => within(p, r))) return 'team';
  }
  return null;
}

function outsideRefusal(which: 'server' | 'team', policy: UriPolicy): UriRefused {
  return which === 'server'
    ? new UriRefused(
        `is outside the allowed data roots (${policy.dataRoots.join(', ') || 'none configured'})`,
      )
    : new UriRefused(
        `is outside your team's data roots (${policy.teamRoots?.join(', ') || 'none: ask an operator'})`,
      );
}

/**
 * Resolves a `file://` URI to a real path inside the data roots (and the team's, when it has
 * some), or refuses it with a reason the user can act on. The path is checked as written before
 * anything is looked up, so a path outside the roots gets the same answer whether or not it exists
 * (no probing of other teams' folders); then symlinks are followed and the real path checked
 * again, so a link cannot lead outside, nor into another team's folder.
 */
export async function resolveFileUri(uri: string, policy: UriPolicy): Promise<string> {
  let p: string;
  try {
    p = path.resolve(fileURLToPath(uri));
  } catch {
    throw new UriRefused('is not a valid file:// URI');
  }
  const asWritten = await outsideRoots(p, policy);
  if (asWritten) throw outsideRefusal(asWritten, policy);
  let real: string;
  try {
    real = await realpath(p);
  } catch {
    throw new UriRefused('does not exist');
  }
  const resolved = await outsideRoots(real, policy);
  if (resolved) throw outsideRefusal(resolved, policy);
  const s = await stat(real);
  if (!s.isFile()) throw new UriRefused('is not a regular file');
  return real;
}

/** Checks that an http(s) URI names an allowed host (its addresses are checked on connecting). */
export function checkHttpUri(uri: string, policy: UriPolicy): URL {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new UriRefused('is not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UriRefused('is not http(s): only http and https are fetched');
  if (url.username || url.password)
    throw new UriRefused('carries credentials, and credentials in URLs are not accepted');
  if (!policy.allowedHosts.includes(url.hostname)) {
    throw new UriRefused(
      policy.allowedHosts.length === 0
        ? 'cannot be fetched: http(s) sources are disabled on this server (set RETORT_ALLOWED_HOSTS to allow hosts)'
        : `names host ${url.hostname}, which is not in the allowed hosts (${policy.allowedHosts.join(', ')})`,
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
        else await resolvePublicAddress(checkHttpUri(uri, policy).hostname, policy);
        return null;
      } catch (e) {
        return { path: at, message: `${uri} ${describeRefusal(e)}` };
      }
    }),
  );
  return problems.filter((p): p is ErrorDetail => p !== null);
}

/** A refusal's message, or a neutral one for anything unexpected (whose details stay in the logs). */
export function describeRefusal(e: unknown): string {
  return e instanceof UriRefused ? e.message : 'cannot be read';
}
