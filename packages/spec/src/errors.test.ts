import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, renderErrorCatalog } from './errors.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Every source file of the apps and packages (not tests, not generated code). */
function sources(): { file: string; text: string }[] {
  const out: { file: string; text: string }[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = path.join(dir, name);
      if (['node_modules', 'dist', 'generated'].includes(name)) continue;
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.test.ts'))
        out.push({ file: p, text: readFileSync(p, 'utf8') });
    }
  };
  for (const top of ['apps', 'packages'])
    for (const name of readdirSync(path.join(ROOT, top))) {
      const src = path.join(ROOT, top, name, 'src');
      if (statSync(src, { throwIfNoEntry: false })?.isDirectory()) walk(src);
    }
  return out;
}

describe('error codes', () => {
  it('docs/errors.md is what the codes say (npm run docs:errors writes it)', () => {
    expect(readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8')).toBe(renderErrorCatalog());
  });

  it('every code has a description and is raised somewhere; every code raised is in the catalog', () => {
    const files = sources().filter((f) => !f.file.endsWith(path.join('spec', 'src', 'errors.ts')));
    const all = files.map((f) => f.text).join('\n');
    for (const [code, e] of Object.entries(ErrorCodes)) {
      expect([code, e.description.length > 20]).toEqual([code, true]);
      expect([code, all.includes(`'${code}'`)]).toEqual([code, true]);
    }
    const raised = [...all.matchAll(/(?:RetortError\(\s*|code: )'(RETORT_[A-Z_]+)'/g)].map((m) => m[1]!);
    expect(raised.length).toBeGreaterThan(50);
    for (const code of raised) expect(Object.keys(ErrorCodes)).toContain(code);
  });
});
