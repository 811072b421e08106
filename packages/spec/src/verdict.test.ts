import { describe, expect, it } from 'vitest';
import { parseSpec } from './validate.js';
import { verdictOf } from './verdict.js';

const summary = {
  student: { accuracy: 0.87, params: 25_000, latencyMs: 0.01 },
  accuracyRetention: 0.97,
} as never;

describe('acceptance thresholds', () => {
  it('pass when every bound holds; each failing bound is named with its value', () => {
    const accept = {
      'student.accuracy': { gte: 0.85, lt: 0.9 },
      accuracyRetention: { gte: 0.98 },
      'student.params': { lte: 25_000 },
    };
    const v = verdictOf('succeeded', accept, summary)!;
    expect(v.passed).toBe(false);
    expect(v.checks.map((c) => [c.metric, c.op, c.passed])).toEqual([
      ['student.accuracy', 'gte', true],
      ['student.accuracy', 'lt', true],
      ['student.params', 'lte', true],
      ['accuracyRetention', 'gte', false],
    ]);
    expect(v.reason).toBe('accuracyRetention 0.97 is not ≥ 0.98');
    expect(verdictOf('succeeded', { 'student.accuracy': { gt: 0.87 } }, summary)!.passed).toBe(false);
    expect(verdictOf('succeeded', { 'student.accuracy': { gte: 0.87 } }, summary)!.passed).toBe(true);
  });

  it('a missing figure fails its bound; an ended run that did not succeed fails; a live one has none', () => {
    expect(verdictOf('succeeded', { agreement: { gte: 0.5 } }, summary)).toMatchObject({
      passed: false,
      reason: 'agreement missing is not ≥ 0.5',
    });
    expect(verdictOf('succeeded', undefined, summary)).toEqual({
      passed: true,
      reason: 'the run succeeded (no thresholds set)',
      checks: [],
    });
    expect(verdictOf('failed', { 'student.accuracy': { gte: 0 } }, null)).toEqual({
      passed: false,
      reason: 'the run failed',
      checks: [],
    });
    for (const live of ['queued', 'running', 'paused']) expect(verdictOf(live, undefined, null)).toBeNull();
  });

  it('are validated with the spec: known figures, at least one bound, teacher figures only when distilling', () => {
    const base = {
      kind: 'train',
      student: { preset: 'mlp' },
      data: { train: { format: 'idx', images: 'file:///a', labels: 'file:///b' } },
    };
    expect(parseSpec({ ...base, accept: { 'student.accuracy': { gte: 0.8 } } }).accept).toEqual({
      'student.accuracy': { gte: 0.8 },
    });
    let err: { details: { path: string; message: string }[] } | undefined;
    try {
      parseSpec({
        ...base,
        accept: { 'student.acuracy': { gte: 0.8 }, agreement: { gte: 0.9 }, 'student.ece': {} },
      });
    } catch (e) {
      err = e as typeof err;
    }
    expect(err!.details.map((d) => d.path).sort()).toEqual([
      '/accept/agreement',
      '/accept/student.acuracy',
      '/accept/student.ece',
    ]);
  });
});
