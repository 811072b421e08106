import { randomBytes } from 'node:crypto';
import { createDatabase } from './postgres.js';

/** A new, empty database on the test server, named for the test file that asked for it. */
export async function freshDatabase(serverUrl: string, label: string): Promise<string> {
  const name = `t_${label
    .replace(/[^a-z0-9]/gi, '_')
    .toLowerCase()
    .slice(0, 40)}_${randomBytes(4).toString('hex')}`;
  return createDatabase(serverUrl, name);
}

/** A Redis key prefix of its own, so test files can share one Redis server. */
export function freshQueuePrefix(label: string): string {
  return `t-${label
    .replace(/[^a-z0-9]/gi, '-')
    .toLowerCase()
    .slice(0, 30)}-${randomBytes(3).toString('hex')}`;
}
