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
  /** The team's data roots (null: all of RETORT_DATA_ROOTS). */
  dataRoots: string[] | null;
}

/**
 * Makes sure the default team exists and that `adminKey` (from the environment) is a key of it
 * with every scope. Idempotent; safe for several processes at start-up. A bootstrap key that was
 * revoked stays revoked (`revoked: true`): a restart must not bring back a key someone took away;
 * set a new RETORT_ADMIN_KEY instead.
 */
export async function bootstrapAdmin(
  db: Db,
  adminKey: string,
): Promise<{ teamId: string; revoked: boolean }> {
  const team = await db.prisma.team.upsert({
    where: { name: DEFAULT_TEAM },
    create: { name: DEFAULT_TEAM },
    update: {},
  });
  const hash = hashKey(adminKey);
  const key = await db.prisma.apiKey.upsert({
    where: { hash },
    create: {
      teamId: team.id,
      name: 'admin (RETORT_ADMIN_KEY)',
      prefix: adminKey.slice(0, 8),
      hash,
      scopes: ['admin', 'runs:read', 'runs:write'],
    },
    update: {},
  });
  return { teamId: team.id, revoked: key.revokedAt !== null };
}

/** Of these key ids, the ones still valid (known and not revoked). */
export async function activeKeyIds(db: Db, keyIds: string[]): Promise<Set<string>> {
  if (keyIds.length === 0) return new Set();
  const rows = await db.prisma.apiKey.findMany({
    where: { id: { in: keyIds }, revokedAt: null },
    select: { id: true },
  });
  return new Set(rows.map((r) => r.id));
}

/** The identity behind a bearer key, or null when unknown or revoked. */
export async function findKey(db: Db, key: string): Promise<KeyIdentity | null> {
  const k = await db.prisma.apiKey.findUnique({
    where: { hash: hashKey(key) },
    include: { team: { select: { name: true, dataRoots: true } } },
  });
  if (!k || k.revokedAt) return null;
  return {
    keyId: k.id,
    teamId: k.teamId,
    scopes: k.scopes,
    operator: k.team.name === DEFAULT_TEAM,
    dataRoots: k.team.dataRoots.length > 0 ? k.team.dataRoots : null,
  };
}

export async function touchKey(db: Db, keyId: string): Promise<void> {
  await db.prisma.apiKey.update({ where: { id: keyId }, data: { lastUsedAt: new Date() } });
}
