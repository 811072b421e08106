import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fashionMnistData } from '@retort/devstack';
import { describe, expect, it } from 'vitest';
import { runLocal } from './local.js';

const data = fashionMnistData(300, 100);

describe('retort local', () => {
  it('trains a teacher and distils it with no services, writing everything to a folder', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'retort-local-'));
    const teacherSpec = path.join(out, 'teacher.json');
    writeFileSync(
      teacherSpec,
      JSON.stringify({
        kind: 'train',
        student: { preset: 'mlp', hidden: [32] },
        data,
        training: { epochs: 1, batchSize: 50 },
      }),
    );
    const teacherId = await runLocal(teacherSpec, { out, dataRoots: ['/usr/share/datasets'], quiet: true });
    for (const f of [
      'spec.json',
      'metrics.jsonl',
      'model.json',
      'weights.bin',
      'summary.json',
      'checkpoints',
    ]) {
      expect(existsSync(path.join(out, teacherId, f)), f).toBe(true);
    }
    const lines = readFileSync(path.join(out, teacherId, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.name === 'loss')).toHaveLength(6);

    const distillSpec = path.join(out, 'distill.json');
    writeFileSync(
      distillSpec,
      JSON.stringify({
        teacher: { run: teacherId },
        student: { preset: 'mlp', hidden: [8] },
        data,
        training: { epochs: 1, batchSize: 50 },
      }),
    );
    const studentId = await runLocal(distillSpec, { out, dataRoots: ['/usr/share/datasets'], quiet: true });
    const summary = JSON.parse(readFileSync(path.join(out, studentId, 'summary.json'), 'utf8'));
    const teacherSummary = JSON.parse(readFileSync(path.join(out, teacherId, 'summary.json'), 'utf8'));
    expect(summary.teacher.accuracy).toBe(teacherSummary.student.accuracy);
    expect(summary.student.params).toBe(784 * 8 + 8 + 8 * 10 + 10);
  });

  it('refuses a bad spec before doing anything, listing its problems', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'retort-local-'));
    const file = path.join(out, 'bad.json');
    writeFileSync(file, JSON.stringify({ kind: 'train', student: { preset: 'rnn' }, data }));
    await expect(
      runLocal(file, { out, dataRoots: ['/usr/share/datasets'], quiet: true }),
    ).rejects.toMatchObject({
      code: 'RETORT_SPEC_INVALID',
      details: [{ path: '/student', message: 'has preset "rnn"; expected one of "mlp", "cnn"' }],
    });
  });
});
