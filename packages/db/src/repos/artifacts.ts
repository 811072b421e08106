import { createHash } from 'node:crypto';
import { type ArtifactKind, type ArtifactResource, RetortError } from '@retort/spec';
import { type Db, FencedOutError } from '../client.js';
import type { Artifact } from '../generated/prisma/client.js';

/** Artifact content is stored in rows of this size; downloads stream them one batch at a time. */
export const CHUNK_BYTES = 1 << 20;
const CHUNKS_PER_READ = 4;

const kindToDb = (k: ArtifactKind) => k.replace('-', '_') as Artifact['kind'];
const kindFromDb = (k: Artifact['kind']) => k.replace('_', '-') as ArtifactKind;

export function toArtifactResource(a: Artifact): ArtifactResource {
  return {
    id: a.id,
    kind: kindFromDb(a.kind),
    name: a.name,
    sizeBytes: Number(a.sizeBytes),
    sha256: a.sha256,
    createdAt: a.createdAt.toISOString(),
  };
}

export interface PutArtifact {
  runId: string;
  /** The writer's attempt; the write is refused unless it still holds the run. */
  attempt: number;
  kind: ArtifactKind;
  name: string;
  contentType?: string;
  bytes: Uint8Array;
  metadata?: Record<string, unknown>;
}

/**
 * Stores an artifact in one transaction: readers see either the old version or the whole new
 * one, never a part. An artifact with the same run, kind and name is replaced.
 */
export async function putArtifact(db: Db, a: PutArtifact): Promise<ArtifactResource> {
  const buf = Buffer.from(a.bytes.buffer, a.bytes.byteOffset, a.bytes.byteLength);
  const sha256 = createHash('sha256').update(buf).digest('hex');
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const held = await client.query(
      `SELECT 1 FROM runs WHERE id = $1 AND attempt = $2 AND status = 'running' FOR SHARE`,
      [a.runId, a.attempt],
    );
    if (held.rowCount === 0) throw new FencedOutError(a.runId, a.attempt, `artifact ${a.kind}/${a.name}`);
    await client.query('DELETE FROM artifacts WHERE run_id = $1 AND kind = $2 AND name = $3', [
      a.runId,
      a.kind,
      a.name,
    ]);
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO artifacts (id, run_id, kind, name, size_bytes, sha256, content_type, chunk_size, metadata)
       VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
      [
        a.runId,
        a.kind,
        a.name,
        buf.byteLength,
        sha256,
        a.contentType ?? 'application/octet-stream',
        CHUNK_BYTES,
        a.metadata ?? null,
      ],
    );
    const id = rows[0]!.id;
    for (let seq = 0, off = 0; off < buf.byteLength || seq === 0; seq++, off += CHUNK_BYTES) {
      await client.query('INSERT INTO artifact_chunks (artifact_id, seq, data) VALUES ($1, $2, $3)', [
        id,
        seq,
        buf.subarray(off, off + CHUNK_BYTES),
      ]);
    }
    if (a.kind === 'checkpoint') {
      // In the same transaction: the event (and the webhook deliveries it triggers) exist exactly
      // when the checkpoint does.
      await client.query(`INSERT INTO run_events (run_id, type, data) VALUES ($1, 'checkpoint', $2)`, [
        a.runId,
        { artifactId: id, name: a.name, attempt: a.attempt, ...(a.metadata ?? {}) },
      ]);
    }
    await client.query('COMMIT');
    const created = await db.prisma.artifact.findUniqueOrThrow({ where: { id } });
    return toArtifactResource(created);
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

export async function listArtifacts(db: Db, runId: string): Promise<ArtifactResource[]> {
  const rows = await db.prisma.artifact.findMany({
    where: { runId },
    orderBy: [{ createdAt: 'asc' }, { name: 'asc' }],
  });
  return rows.map(toArtifactResource);
}

/** An artifact with its run's team, for access checks. */
export async function getArtifact(db: Db, id: string): Promise<(Artifact & { teamId: string }) | null> {
  const a = await db.prisma.artifact.findUnique({
    where: { id },
    include: { run: { select: { teamId: true } } },
  });
  if (!a) return null;
  const { run, ...rest } = a;
  return { ...rest, teamId: run.teamId };
}

export async function findArtifact(
  db: Db,
  runId: string,
  kind: ArtifactKind,
  name: string,
): Promise<Artifact | null> {
  return db.prisma.artifact.findUnique({ where: { runId_kind_name: { runId, kind: kindToDb(kind), name } } });
}

/** The content, a few chunks per query, in order; memory stays at a few chunks whatever the size. */
export async function* streamArtifact(db: Db, artifactId: string): AsyncGenerator<Buffer> {
  for (let from = 0; ; from += CHUNKS_PER_READ) {
    const { rows } = await db.pool.query<{ data: Buffer }>(
      'SELECT data FROM artifact_chunks WHERE artifact_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq',
      [artifactId, from, from + CHUNKS_PER_READ],
    );
    for (const r of rows) if (r.data.byteLength > 0) yield r.data;
    if (rows.length < CHUNKS_PER_READ) return;
  }
}

export async function readArtifact(db: Db, artifactId: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of streamArtifact(db, artifactId)) parts.push(part);
  return Buffer.concat(parts);
}

export async function readArtifactByName(
  db: Db,
  runId: string,
  kind: ArtifactKind,
  name: string,
): Promise<Buffer> {
  const a = await findArtifact(db, runId, kind, name);
  if (!a)
    throw new RetortError('RETORT_ARTIFACT_NOT_FOUND', `run ${runId} has no ${kind} artifact named ${name}`);
  return readArtifact(db, a.id);
}

/**
 * Keeps a run's newest `keep` checkpoints and its best one (highest `valAccuracy` in metadata);
 * deletes the rest. Returns how many it deleted.
 */
export async function pruneCheckpoints(db: Db, runId: string, keep: number): Promise<number> {
  const res = await db.pool.query(
    `DELETE FROM artifacts WHERE run_id = $1 AND kind = 'checkpoint' AND id NOT IN (
       (SELECT id FROM artifacts WHERE run_id = $1 AND kind = 'checkpoint'
         ORDER BY (metadata->>'step')::int DESC NULLS LAST, created_at DESC LIMIT $2)
       UNION ALL
       (SELECT id FROM artifacts WHERE run_id = $1 AND kind = 'checkpoint' AND metadata ? 'valAccuracy'
         ORDER BY (metadata->>'valAccuracy')::float8 DESC, (metadata->>'step')::int DESC LIMIT 1))`,
    [runId, keep],
  );
  return res.rowCount ?? 0;
}

/** The run's checkpoint with the highest step, with its bytes; null when it has none. */
export async function latestCheckpoint(
  db: Db,
  runId: string,
): Promise<{ artifact: ArtifactResource; step: number; bytes: Buffer } | null> {
  const { rows } = await db.pool.query<{ id: string; step: number }>(
    `SELECT id, (metadata->>'step')::int AS step FROM artifacts WHERE run_id = $1 AND kind = 'checkpoint'
      ORDER BY (metadata->>'step')::int DESC NULLS LAST, created_at DESC LIMIT 1`,
    [runId],
  );
  const row = rows[0];
  if (!row) return null;
  const a = await db.prisma.artifact.findUniqueOrThrow({ where: { id: row.id } });
  return { artifact: toArtifactResource(a), step: row.step, bytes: await readArtifact(db, row.id) };
}

/** The newest teacher-output cache stored under `key` by any run of the team, as bytes; null if none. */
export async function findTeacherCache(db: Db, teamId: string, key: string): Promise<Buffer | null> {
  const { rows } = await db.pool.query<{ id: string }>(
    `SELECT a.id FROM artifacts a JOIN runs r ON r.id = a.run_id
      WHERE r.team_id = $1 AND a.kind = 'teacher-cache' AND a.metadata->>'cacheKey' = $2
      ORDER BY a.created_at DESC LIMIT 1`,
    [teamId, key],
  );
  return rows[0] ? readArtifact(db, rows[0].id) : null;
}
