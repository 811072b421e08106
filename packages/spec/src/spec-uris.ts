import type { RunSpec } from './run-spec.js';

/** Every URI in a spec, with the JSON Pointer of the field that holds it. */
export function specUris(spec: RunSpec): { path: string; uri: string }[] {
  const out: { path: string; uri: string }[] = [];
  if (spec.teacher && 'uri' in spec.teacher) out.push({ path: '/teacher/uri', uri: spec.teacher.uri });
  for (const [i, t] of (spec.teachers ?? []).entries())
    if ('uri' in t) out.push({ path: `/teachers/${i}/uri`, uri: t.uri });
  if ('uri' in spec.student) out.push({ path: '/student/uri', uri: spec.student.uri });
  const sets: [string, object][] = [
    ['/data/train', spec.data.train],
    ['/data/validation', spec.data.validation],
  ];
  if (spec.data.unlabeled) sets.push(['/data/unlabeled', spec.data.unlabeled]);
  for (const [at, set] of sets) {
    for (const key of ['images', 'labels', 'uri', 'features'] as const) {
      const v = (set as Record<string, unknown>)[key];
      if (typeof v === 'string' && /^(file|https?):/.test(v)) out.push({ path: `${at}/${key}`, uri: v });
    }
  }
  return out;
}
