#!/usr/bin/env node
import { migrate } from './migrate.js';

// `npm run db:migrate`: applies prisma/migrations to DATABASE_URL.
const url = process.env.DATABASE_URL;
if (!url) {
  console.error('DATABASE_URL is not set');
  process.exit(2);
}
try {
  const r = await migrate(url, undefined, (m) => console.log(m));
  console.log(`${r.applied.length} applied, ${r.alreadyApplied.length} already applied`);
} catch (e) {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
}
