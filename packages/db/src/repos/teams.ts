import { createHash } from 'node:crypto';
import type { Db } from '../client.js';

export const DEFAULT_TEAM = 'default';

export const hashKey = (key: string): string => createHash('sha256').update(key).digest('hex');

export interface KeyIdentity {
  keyId: string;
  teamId: string;
  scopes: string[];
  /** A key of the default team: with `admin`, it manages every team. */
  operator: boolean;
}

/**
 * Makes sure the default team exists and that `adminKey` (from the environment) is a key of it
 * with every scope. Idempotent; safe for several processes at start-up.
 */
export async function bootstrapAdmin(db: Db, adminKey: string): Promise<{ teamId: string }> {
  const team = await db.prisma.team.upsert({
    where: { name: DEFAULT_TEAM },
    create: { name: DEFAULT_TEAM },
    update: {},
  });
  const hash = hashKey(adminKey);
  await db.prisma.apiKey.upsert({
    where: { hash },
    create: {
      teamId: team.id,
      name: 'admin (RETORT_ADMIN_KEY)',
      prefix: adminKey.slice(0, 8),
      hash,
      scopes: ['admin', 'runs:read', 'runs:write'],
    },
    update: { revokedAt: null },
  });
  return { teamId: team.id };
}

/** The identity behind a bearer key, or null when unknown or revoked. */
export async function findKey(db: Db, key: string): Promise<KeyIdentity | null> {
  const k = await db.prisma.apiKey.findUnique({
    where: { hash: hashKey(key) },
    include: { team: { select: { name: true } } },
  });
  if (!k || k.revokedAt) return null;
  return { keyId: k.id, teamId: k.teamId, scopes: k.scopes, operator: k.team.name === DEFAULT_TEAM };
}

export async function touchKey(db: Db, keyId: string): Promise<void> {
  await db.prisma.apiKey.update({ where: { id: keyId }, data: { lastUsedAt: new Date() } });
}
