/**
 * How bench:distill's kd settings were chosen: kd at several temperatures and weights against the
 * student trained alone, on held-out training images only (train on images 0–39 999, measure on
 * 40 000–49 999; the test set is never read). Same teacher (same spec, so the same bytes) and same
 * student settings as bench/distillation.ts. Writes docs/benchmarks/distillation-kd-trials.md.
 *
 *   npm run bench:distill:trials               # the published page (about 35 min on 2 cores)
 *   npm run bench:distill:trials -- --epochs 1 --seeds 1 --teacher-epochs 1 --train 2000 --out /tmp/t.md
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '@retort/devstack';
import {
  labelledData,
  localRunner,
  mean,
  STUDENT,
  sharedOptions,
  TEACHER,
  TRAIN_IMAGES,
  TRAIN_LABELS,
  table,
  training,
} from './distill-runs.js';

const { values: opt } = parseArgs({
  options: {
    ...sharedOptions,
    seeds: { type: 'string', default: '4' },
    train: { type: 'string', default: '40000' },
    out: { type: 'string', default: path.join(REPO_ROOT, 'docs/benchmarks/distillation-kd-trials.md') },
    work: { type: 'string', default: path.join(REPO_ROOT, '.bench/distillation-trials') },
  },
});
const EPOCHS = Number(opt.epochs);
const TEACHER_EPOCHS = Number(opt['teacher-epochs']);
const SEEDS = Number(opt.seeds);
const PARALLEL = Number(opt.parallel);
const TRAIN = Number(opt.train);

/** The students' held-out split: the test set is not read. */
const heldOut = {
  train: { format: 'idx', images: TRAIN_IMAGES, labels: TRAIN_LABELS, limit: TRAIN },
  validation: {
    format: 'idx',
    images: TRAIN_IMAGES,
    labels: TRAIN_LABELS,
    offset: TRAIN,
    limit: 50_000 - TRAIN,
  },
};
const kd = (temperature: unknown, soft: number, hard: number) => [
  { type: 'kd', weight: soft, temperature },
  { type: 'ce', weight: hard },
];
/** The settings tried, in the order they were: the first round's four, then the second round's. */
const TRIALS: { name: string; losses: unknown[] }[] = [
  { name: 'T 4, 0.9 soft + 0.1 hard', losses: kd(4, 0.9, 0.1) },
  { name: 'T 4, 0.5 soft + 0.5 hard', losses: kd(4, 0.5, 0.5) },
  { name: 'T 2, 0.9 soft + 0.1 hard', losses: kd(2, 0.9, 0.1) },
  { name: 'T 2, 0.5 soft + 0.5 hard', losses: kd(2, 0.5, 0.5) },
  { name: 'T 2, 0.5 soft + 1.0 hard', losses: kd(2, 0.5, 1) },
  { name: 'T 4 → 1 (cosine), 0.5 + 0.5', losses: kd({ from: 4, to: 1, schedule: 'cosine' }, 0.5, 0.5) },
  { name: 'T 1, 0.5 soft + 0.5 hard', losses: kd(1, 0.5, 0.5) },
];

const { runLocal, pool } = localRunner(opt.work, PARALLEL);
const started = performance.now();
const seeds = Array.from({ length: SEEDS }, (_, i) => i + 1);
console.error(
  `bench:distill:trials: ${TRIALS.length} kd settings × ${SEEDS} seed${SEEDS === 1 ? '' : 's'}; work in ${opt.work}`,
);

const accuracy = async (name: string, spec: object) => {
  const r = await runLocal(name, spec);
  const acc = r.summary.student.accuracy;
  console.error(`[${((performance.now() - started) / 60_000).toFixed(1)} min] ${name}: ${acc.toFixed(4)}`);
  return { id: r.id, acc };
};
let teacherId = '';
const first = await pool<number>([
  async () => {
    // bench:distill's teacher, spec for spec (at its default --limit), so the same bytes.
    const r = await accuracy('teacher', {
      kind: 'train',
      student: TEACHER,
      data: labelledData(50_000),
      training: training(1, TEACHER_EPOCHS),
    });
    teacherId = r.id;
    return r.acc;
  },
  ...seeds.map(
    (s) => async () =>
      (
        await accuracy(`alone-seed${s}`, {
          kind: 'train',
          student: STUDENT,
          data: heldOut,
          training: training(s, EPOCHS),
        })
      ).acc,
  ),
]);
const alone = first.slice(1);
const tried = await pool(
  TRIALS.flatMap((t, i) =>
    seeds.map((s) => async () => {
      const r = await accuracy(`trial${i + 1}-seed${s}`, {
        kind: 'distill',
        teacher: { run: teacherId },
        student: STUDENT,
        data: heldOut,
        distillation: { losses: t.losses },
        training: training(s, EPOCHS),
      });
      return { trial: i, seed: s, acc: r.acc };
    }),
  ),
);

const accs = (i: number) => seeds.map((s) => tried.find((r) => r.trial === i && r.seed === s)!.acc);
const gain = (i: number) => mean(accs(i)) - mean(alone);
const best = TRIALS.map((_, i) => i).reduce((a, b) => (gain(b) > gain(a) ? b : a));
const pp = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(2)} pp`;
const body = [
  ['alone', ...alone.map((a) => a.toFixed(4)), '', ''],
  ...TRIALS.map((t, i) => [
    t.name,
    ...accs(i).map((a) => a.toFixed(4)),
    pp(gain(i)),
    `${accs(i).filter((a, k) => a > alone[k]!).length} of ${SEEDS}`,
  ]),
];
const minutes = (performance.now() - started) / 60_000;
const page = `# Choosing kd's settings for bench:distill, on held-out training images

Written by \`npm run bench:distill:trials\` (\`bench/distillation-trials.ts\`) on ${new Date().toISOString().slice(0, 10)};
${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${PARALLEL} runs at a time; ${minutes.toFixed(0)} minutes in all.

Each trial trains [bench:distill](distillation.md)'s student (same architecture, ${EPOCHS} epoch${EPOCHS === 1 ? '' : 's'}, batch 128,
Adam from 0.002 on a cosine schedule) on Fashion-MNIST training images 0–${(TRAIN - 1).toLocaleString('en')} and measures its
accuracy on training images ${TRAIN.toLocaleString('en')}–49,999; the test set is never read. The teacher is bench:distill's
(same spec, trained on images 0–49,999, so the held-out images among them; teacher accuracy
${first[0]!.toFixed(4)} on the test set, as that page reports).

${table(['trial', ...seeds.map((s) => `seed ${s}`), 'mean − alone', 'seeds above'], body)}

Mean − alone: the trial's mean accuracy minus the student trained alone's. Seeds above: on how many
seeds the trial beat the student trained alone from the same seed. Highest mean: **${TRIALS[best]!.name}**.
`;
mkdirSync(path.dirname(opt.out), { recursive: true });
writeFileSync(opt.out, page);
console.log(page);
console.error(`wrote ${opt.out} (${minutes.toFixed(1)} min)`);
