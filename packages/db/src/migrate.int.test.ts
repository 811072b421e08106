import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getDMMF } from '@prisma/internals';
import { freshDatabase } from '@retort/devstack';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MIGRATIONS_DIR, migrate } from './migrate.js';

const SCHEMA = fileURLToPath(new URL('../../../prisma/schema.prisma', import.meta.url));

interface Column {
  table_name: string;
  column_name: string;
  data_type: string;
  udt_name: string;
  is_nullable: 'YES' | 'NO';
  datetime_precision: number | null;
}

/** What Postgres type Prisma maps a scalar to, as information_schema's udt_name spells it. */
function expectedUdt(
  type: string,
  nativeType: [string, string[]] | null | undefined,
  isList: boolean,
): string {
  const base = (() => {
    if (nativeType?.[0] === 'Uuid') return 'uuid';
    if (nativeType?.[0] === 'Timestamptz') return 'timestamptz';
    switch (type) {
      case 'String':
        return 'text';
      case 'Int':
        return 'int4';
      case 'BigInt':
        return 'int8';
      case 'Float':
        return 'float8';
      case 'Boolean':
        return 'bool';
      case 'DateTime':
        return 'timestamp';
      case 'Json':
        return 'jsonb';
      case 'Bytes':
        return 'bytea';
      default:
        throw new Error(`no mapping for ${type}`);
    }
  })();
  return isList ? `_${base}` : base;
}

describe('migrations', () => {
  let url: string;
  let client: pg.Client;

  beforeAll(async () => {
    url = await freshDatabase(inject('postgresServerUrl'), 'migrate');
    client = new pg.Client({ connectionString: url });
    await client.connect();
  });
  afterAll(async () => {
    await client.end();
  });

  it('apply once, record themselves as Prisma does, and are idempotent', async () => {
    const first = await migrate(url);
    expect(first.applied.length).toBeGreaterThan(0);
    const second = await migrate(url);
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toEqual(first.applied);

    const { rows } = await client.query(
      'SELECT migration_name, checksum, finished_at, applied_steps_count FROM _prisma_migrations',
    );
    for (const name of first.applied) {
      const row = rows.find((r) => r.migration_name === name);
      const sql = readFileSync(path.join(MIGRATIONS_DIR, name, 'migration.sql'));
      expect(row?.checksum).toBe(createHash('sha256').update(sql).digest('hex'));
      expect(row?.finished_at).toBeInstanceOf(Date);
      expect(row?.applied_steps_count).toBe(1);
    }
  });

  it('run concurrently without applying anything twice', async () => {
    const other = await freshDatabase(inject('postgresServerUrl'), 'migrate_race');
    const results = await Promise.all([migrate(other), migrate(other), migrate(other)]);
    const appliedCount = results.reduce((n, r) => n + r.applied.length, 0);
    expect(appliedCount).toBe(results[0]!.applied.length + results[0]!.alreadyApplied.length);
  });

  it('produce a database that matches every model field of schema.prisma', async () => {
    await migrate(url);
    const dmmf = await getDMMF({ datamodel: readFileSync(SCHEMA, 'utf8') });
    const { rows: columns } = await client.query<Column>(
      `SELECT table_name, column_name, data_type, udt_name, is_nullable, datetime_precision
         FROM information_schema.columns WHERE table_schema = 'public'`,
    );
    const enums = new Map(dmmf.datamodel.enums.map((e) => [e.name, e]));
    let checked = 0;
    for (const model of dmmf.datamodel.models) {
      const table = model.dbName ?? model.name;
      for (const field of model.fields) {
        if (field.kind === 'object') continue;
        const column = field.dbName ?? field.name;
        const col = columns.find((c) => c.table_name === table && c.column_name === column);
        expect(col, `${table}.${column} (${model.name}.${field.name})`).toBeDefined();
        if (!col) continue;
        const where = `${table}.${column}`;
        if (field.kind === 'enum') {
          const e = enums.get(field.type)!;
          expect(col.udt_name, where).toBe(e.dbName ?? e.name);
        } else {
          const native = field.nativeType as [string, string[]] | null | undefined;
          expect(col.udt_name, where).toBe(expectedUdt(field.type, native, field.isList));
          if (native?.[0] === 'Timestamptz')
            expect(col.datetime_precision, where).toBe(Number(native[1][0] ?? 6));
        }
        // Prisma leaves scalar lists nullable in Postgres; everything else follows `?`.
        if (!field.isList) expect(col.is_nullable, where).toBe(field.isRequired ? 'NO' : 'YES');
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(40);

    for (const e of dmmf.datamodel.enums) {
      const { rows } = await client.query<{ v: string }>(
        `SELECT e.enumlabel AS v FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = $1 ORDER BY e.enumsortorder`,
        [e.dbName ?? e.name],
      );
      expect(
        rows.map((r) => r.v),
        e.name,
      ).toEqual(e.values.map((v) => v.dbName ?? v.name));
    }

    // Unique constraints the code relies on (idempotency keys, artifact names, key hashes).
    const { rows: uniques } = await client.query<{ indexname: string }>(
      `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexdef LIKE 'CREATE UNIQUE%'`,
    );
    const uniqueNames = uniques.map((u) => u.indexname);
    for (const model of dmmf.datamodel.models) {
      for (const u of model.uniqueFields) {
        const table = model.dbName ?? model.name;
        const cols = u.map((f) => model.fields.find((x) => x.name === f)?.dbName ?? f);
        expect(uniqueNames, `${table}(${cols.join(', ')})`).toContain(`${table}_${cols.join('_')}_key`);
      }
    }
  });
});
