/** Writes docs/errors.md from the error codes (packages/spec/src/errors.ts). */
import { writeFileSync } from 'node:fs';
import { renderErrorCatalog } from '@retort/spec';

const out = new URL('../docs/errors.md', import.meta.url);
writeFileSync(out, renderErrorCatalog());
console.log(`wrote ${out.pathname}`);
