import { randomBytes } from 'node:crypto';
import { RetortError } from '@retort/spec';
import type { Db } from '../client.js';
import { hashKey } from './teams.js';

export const SCOPES = ['runs:read', 'runs:write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface TeamRecord {
  id: string;
  name: string;
  /** Folders the team's file:// URIs must fall within; null: all of RETORT_DATA_ROOTS. */
  dataRoots: string[] | null;
  createdAt: Date;
}

const toTeam = (t: { id: string; name: string; dataRoots: string[]; createdAt: Date }): TeamRecord => ({
  id: t.id,
  name: t.name,
  dataRoots: t.dataRoots.length > 0 ? t.dataRoots : null,
  createdAt: t.createdAt,
});

export interface KeyRecord {
  id: string;
  teamId: string;
  name: string;
  prefix: string;
  scopes: string[];
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

const keyFields = {
  id: true,
  teamId: true,
  name: true,
  prefix: true,
  scopes: true,
  createdAt: true,
  lastUsedAt: true,
  revokedAt: true,
} as const;

export async function createTeam(
  db: Db,
  input: { name: string; dataRoots?: string[] | null | undefined },
): Promise<TeamRecord> {
  const { name } = input;
  const existing = await db.prisma.team.findUnique({ where: { name } });
  if (existing) throw new RetortError('RETORT_CONFLICT', `A team named "${name}" exists already.`);
  try {
    return toTeam(await db.prisma.team.create({ data: { name, dataRoots: input.dataRoots ?? [] } }));
  } catch (e) {
    if ((e as { code?: string }).code === 'P2002')
      throw new RetortError('RETORT_CONFLICT', `A team named "${name}" exists already.`);
    throw e;
  }
}

export async function listTeams(db: Db, only?: string): Promise<TeamRecord[]> {
  const rows = await db.prisma.team.findMany({
    where: only ? { id: only } : {},
    orderBy: { createdAt: 'asc' },
  });
  return rows.map(toTeam);
}

export async function getTeam(db: Db, id: string): Promise<TeamRecord | null> {
  const t = await db.prisma.team.findUnique({ where: { id } });
  return t ? toTeam(t) : null;
}

/** Changes a team's data roots (null: all of RETORT_DATA_ROOTS); null when there is no such team. */
export async function setTeamDataRoots(
  db: Db,
  id: string,
  dataRoots: string[] | null,
): Promise<TeamRecord | null> {
  const r = await db.prisma.team.updateMany({ where: { id }, data: { dataRoots: dataRoots ?? [] } });
  return r.count > 0 ? getTeam(db, id) : null;
}

/**
 * A new key for a team: 32 random bytes, shown once in the answer and stored only as its sha256.
 * Keys start `rtk_` so that secret scanners can find leaked ones.
 */
export async function createKey(
  db: Db,
  teamId: string,
  name: string,
  scopes: Scope[],
): Promise<{ key: string; record: KeyRecord }> {
  const key = `rtk_${randomBytes(32).toString('base64url')}`;
  const record = await db.prisma.apiKey.create({
    data: { teamId, name, prefix: key.slice(0, 12), hash: hashKey(key), scopes: [...new Set(scopes)] },
    select: keyFields,
  });
  return { key, record };
}

export async function listKeys(db: Db, teamId: string): Promise<KeyRecord[]> {
  return db.prisma.apiKey.findMany({ where: { teamId }, orderBy: { createdAt: 'asc' }, select: keyFields });
}

/** The team a key belongs to, or null. */
export async function keyTeam(db: Db, keyId: string): Promise<string | null> {
  const k = await db.prisma.apiKey.findUnique({ where: { id: keyId }, select: { teamId: true } });
  return k?.teamId ?? null;
}

/** Revokes a team's key (idempotent); null when the team has no such key. */
export async function revokeKey(db: Db, teamId: string, keyId: string): Promise<KeyRecord | null> {
  const k = await db.prisma.apiKey.findFirst({ where: { id: keyId, teamId }, select: keyFields });
  if (!k) return null;
  if (k.revokedAt) return k;
  return db.prisma.apiKey.update({
    where: { id: keyId },
    data: { revokedAt: new Date() },
    select: keyFields,
  });
}

export interface AuditInput {
  teamId: string | null;
  keyId: string | null;
  action: string;
  target: string | null;
  status: number;
  details?: Record<string, unknown> | undefined;
}

export async function recordAudit(db: Db, e: AuditInput): Promise<void> {
  await db.prisma.auditEntry.create({
    data: {
      teamId: e.teamId,
      keyId: e.keyId,
      action: e.action,
      target: e.target,
      status: e.status,
      ...(e.details ? { details: e.details as object } : {}),
    },
  });
}

export interface AuditRecord {
  id: string;
  teamId: string | null;
  keyId: string | null;
  action: string;
  target: string | null;
  status: number;
  details: unknown;
  createdAt: Date;
}

/** Newest first; `before` is the id to continue below (the previous page's last). */
export async function listAudit(
  db: Db,
  opts: { teamId?: string | undefined; before?: bigint | undefined; limit: number },
): Promise<AuditRecord[]> {
  const rows = await db.prisma.auditEntry.findMany({
    where: {
      ...(opts.teamId ? { teamId: opts.teamId } : {}),
      ...(opts.before !== undefined ? { id: { lt: opts.before } } : {}),
    },
    orderBy: { id: 'desc' },
    take: opts.limit,
  });
  return rows.map((r) => ({ ...r, id: r.id.toString() }));
}
