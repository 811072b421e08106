import { lookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { UriRefused } from './refusal.js';

/** A name that does not resolve within this long is refused (a request must not wait on DNS). */
const LOOKUP_TIMEOUT_MS = 5000;

/** Ranges that are not the public internet: ipaddr.js's names for them. */
const PUBLIC = new Set(['unicast']);

/** Why an address may not be fetched from (its range), or null when it is a public unicast address. */
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

export interface PinnedAddress {
  address: string;
  family: number;
}

/**
 * The address to connect to for `host`: resolved once, every answer checked, so that a name cannot
 * point inside the network (or be re-pointed between the check and the connection: callers connect
 * to the address returned). Refusals name the host and the kind of address, never the address a
 * name resolved to: that would map the network for whoever asks.
 */
export async function resolvePublicAddress(
  host: string,
  options: { allowPrivateAddresses?: boolean | undefined },
): Promise<PinnedAddress> {
  const bare = host.replace(/^\[|\]$/g, '');
  const literal = isIP(bare);
  let answers: PinnedAddress[];
  let timer: NodeJS.Timeout | undefined;
  try {
    answers = literal
      ? [{ address: bare, family: literal }]
      : await Promise.race([
          lookup(bare, { all: true }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(Object.assign(new Error('lookup timed out'), { code: 'timed out' })),
              LOOKUP_TIMEOUT_MS,
            );
          }),
        ]);
  } catch (e) {
    throw new UriRefused(
      `cannot be reached: ${host} does not resolve (${(e as { code?: string }).code ?? 'lookup failed'})`,
    );
  } finally {
    clearTimeout(timer);
  }
  if (answers.length === 0) throw new UriRefused(`cannot be reached: ${host} has no address`);
  if (!options.allowPrivateAddresses) {
    for (const a of answers) {
      const why = nonPublicAddress(a.address);
      if (why)
        throw new UriRefused(
          `cannot be reached: ${host} ${literal ? 'is' : 'resolves to'} a ${why} address, which this server does not connect to`,
        );
    }
  }
  return answers[0]!;
}

/** A `lookup` for node:http(s) that answers with the address already checked, never asking DNS again. */
export function pinnedLookup(pinned: PinnedAddress): LookupFunction {
  return (_host, options, callback) => {
    if ((options as { all?: boolean }).all) callback(null, [pinned]);
    else callback(null, pinned.address, pinned.family);
  };
}
