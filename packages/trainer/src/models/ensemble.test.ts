import { describe, expect, it } from 'vitest';
import { ensembleTeacher } from './ensemble.js';
import type { Teacher } from './teacher.js';

const fixed = (logits: number[]): Teacher => ({
  runtime: 'test',
  params: 10,
  numClasses: 2,
  fingerprint: 'test',
  logits: async () => Float32Array.from(logits),
  forward: async () => ({ logits: Float32Array.from(logits), features: [] }),
  dispose: () => {},
});

describe('several teachers', () => {
  it('mix their distributions by weight; the mixture’s log-probabilities are the logits', async () => {
    // Teacher A: p = [0.75, 0.25]; teacher B: p = [0.5, 0.5]. Weights 3 : 1 → [0.6875, 0.3125].
    const e = ensembleTeacher([fixed([Math.log(3), 0]), fixed([0, 0])], [3, 1]);
    const z = await e.logits(new Float32Array(1), 1);
    expect(Math.exp(z[0]!)).toBeCloseTo(0.6875, 6);
    expect(Math.exp(z[1]!)).toBeCloseTo(0.3125, 6);
    expect(e.params).toBe(20);
  });
});
