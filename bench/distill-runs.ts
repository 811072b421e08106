/**
 * What bench/distillation.ts and bench/distillation-trials.ts share: the teacher and student, the
 * training settings, and running `retort local` processes a few at a time.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '@retort/devstack';

const CLI = path.join(REPO_ROOT, 'apps/cli/dist/main.js');
const F = 'file:///usr/share/datasets/fashion-mnist';
export const TRAIN_IMAGES = `${F}/train-images-idx3-ubyte.gz`;
export const TRAIN_LABELS = `${F}/train-labels-idx1-ubyte.gz`;
export const TEST_IMAGES = `${F}/t10k-images-idx3-ubyte.gz`;
export const TEST_LABELS = `${F}/t10k-labels-idx1-ubyte.gz`;

/** The first `limit` training images, labelled, and the test set to measure on. */
export const labelledData = (limit: number) => ({
  train: { format: 'idx', images: TRAIN_IMAGES, labels: TRAIN_LABELS, limit },
  validation: { format: 'idx', images: TEST_IMAGES, labels: TEST_LABELS },
});

/**
 * The options both benches take. Their defaults are part of what makes the trials' teacher and
 * student bench:distill's own, so they are written once.
 */
export const sharedOptions = {
  epochs: { type: 'string', default: '4' },
  'teacher-epochs': { type: 'string', default: '5' },
  parallel: { type: 'string', default: '2' },
} as const;

export const TEACHER = { preset: 'cnn', filters: [16, 32], dense: [64] };
export const STUDENT = { preset: 'cnn', filters: [4, 8], dense: [16] };
export const training = (seed: number, epochs: number) => ({
  epochs,
  batchSize: 128,
  optimizer: { type: 'adam', learningRate: 0.002 },
  schedule: { type: 'cosine' },
  seed,
});

export interface Summary {
  student: { accuracy: number; params: number; ece?: number };
  teacher?: { accuracy: number; params: number };
  agreement?: number;
  accuracyRetention?: number;
  trainSeconds: number;
  teacherCache?: string;
}
export interface LocalRun {
  id: string;
  summary: Summary;
  wallSeconds: number;
}

/** Runs `retort local` processes with their specs and runs under `work`, emptied first. */
export function localRunner(work: string, parallel: number) {
  const runs = path.join(work, 'runs');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(runs, { recursive: true });

  /** One `retort local` run; resolves with its id and summary. */
  function runLocal(name: string, spec: object): Promise<LocalRun> {
    const file = path.join(work, `${name}.json`);
    writeFileSync(file, JSON.stringify({ name, ...spec }, null, 2));
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, '--json', 'local', file, '--out', runs], {
        env: { ...process.env, RETORT_DATA_ROOTS: `/usr/share/datasets:${work}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d;
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d;
      });
      child.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`${name} failed (exit ${code}):\n${err.slice(-2000)}`));
        const r = JSON.parse(out) as { id: string; summary: Summary };
        resolve({ ...r, wallSeconds: (performance.now() - t0) / 1000 });
      });
    });
  }

  /** Runs the tasks, `parallel` at a time, in order of the list. */
  async function pool<T>(tasks: (() => Promise<T>)[]): Promise<T[]> {
    const results: T[] = new Array(tasks.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(parallel, tasks.length) }, async () => {
        while (next < tasks.length) {
          const i = next++;
          results[i] = await tasks[i]!();
        }
      }),
    );
    return results;
  }

  return { runLocal, pool };
}

export const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
export const std = (xs: number[]) =>
  xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));

/** A Markdown table with its columns padded, as the repository's formatter (Biome) writes them. */
export function table(header: string[], body: string[][]): string {
  const width = header.map((h, c) => Math.max(3, h.length, ...body.map((r) => r[c]!.length)));
  const line = (cells: string[]) => `| ${cells.map((x, c) => x.padEnd(width[c]!)).join(' | ')} |`;
  return [line(header), line(width.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}
