import { parseSpec } from '@retort/spec';
import { policyByteSource } from '@retort/uri-policy';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend.js';
import { loadStudent } from './load.js';
import { buildPreset, presetParams } from './presets.js';

describe('preset sizes', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('are worked out before building, exactly as TensorFlow.js counts them', () => {
    const cases = [
      { s: { preset: 'mlp', hidden: [128, 64], activation: 'relu', dropout: 0 }, shape: [28, 28, 1] },
      { s: { preset: 'cnn', filters: [4, 8], kernelSize: 3, dense: [16], dropout: 0 }, shape: [28, 28, 1] },
      {
        s: { preset: 'cnn', filters: [16, 32, 64], kernelSize: 5, dense: [], dropout: 0.2 },
        shape: [33, 31, 3],
      },
    ] as const;
    for (const { s, shape } of cases) {
      const model = buildPreset(s as never, [...shape], 10, 1);
      expect(presetParams(s as never, [...shape], 10)).toBe(model.countParams());
      model.dispose();
    }
  });

  it('refuses a student too large for a worker before allocating it', async () => {
    const spec = parseSpec({
      kind: 'train',
      student: { preset: 'mlp', hidden: [4096] },
      data: { train: { format: 'idx', images: 'file:///x', labels: 'file:///y' } },
    });
    // 200 000 inputs × 4096 units: 819 million parameters.
    await expect(
      loadStudent(spec, [200_000], 10, policyByteSource({ dataRoots: [], allowedHosts: [] })),
    ).rejects.toThrow(
      /the student would have 819,\d{3},\d{3} parameters on this data; a worker trains at most 100,000,000/,
    );
  });
});
