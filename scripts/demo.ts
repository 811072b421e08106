/**
 * Retort's main job, end to end on this machine (`npm run demo`):
 *
 *   1. provides Postgres and Redis (DATABASE_URL/REDIS_URL when set; else Docker when an engine
 *      answers; else the local binaries, installing Debian's packages when missing and root),
 *      with their data in .retort/, and applies the migrations;
 *   2. starts the API and a worker, as in production;
 *   3. over HTTP, trains a teacher on Fashion-MNIST (kind `train`), then distils it into a much
 *      smaller MLP (teacher `{ run }`), following both runs' progress;
 *   4. prints both summaries side by side, and stops what it started (`--keep` leaves it running).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { RetortClient, type Run } from '@retort/client';
import { migrate } from '@retort/db';
import {
  ensureDebianPackages,
  FASHION_MNIST_DIR,
  provideServices,
  REPO_ROOT,
  STACK_PACKAGES,
  startRetort,
} from '@retort/devstack';

const args = new Set(process.argv.slice(2));
const keep = args.has('--keep');
const dataDir = path.join(REPO_ROOT, '.retort');
const say = (m: string) => console.log(`[retort] ${m}`);

function example(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(REPO_ROOT, 'examples', name), 'utf8')) as Record<string, unknown>;
}

function progressLine(r: Run, started: number): string {
  const p = r.progress;
  const pct = p.totalSteps ? ` ${((100 * p.step) / p.totalSteps).toFixed(0).padStart(3)}%` : '';
  return `${r.name}: ${r.status.padEnd(9)} epoch ${p.epoch} step ${p.step}/${p.totalSteps ?? '?'}${pct}  (${((Date.now() - started) / 1000).toFixed(0)} s)`;
}

async function follow(client: RetortClient, run: Run): Promise<Run> {
  const started = Date.now();
  let last = '';
  let lastPrint = 0;
  const done = await client.wait(run.id, {
    intervalMs: 1000,
    onUpdate: (r) => {
      const line = progressLine(r, started);
      // A line every 10 s (and at every status change) keeps logs readable.
      if (r.status !== last || Date.now() - lastPrint > 10_000) {
        say(line);
        last = r.status;
        lastPrint = Date.now();
      }
    },
  });
  if (done.status !== 'succeeded') {
    throw new Error(
      `run ${done.id} (${done.name}) ended ${done.status}: ${done.error?.code} ${done.error?.message}`,
    );
  }
  const val = await client.metrics(done.id, { names: ['val_accuracy'] });
  const curve = val.series[0]?.points.map(([, v]) => v.toFixed(4)).join(' → ');
  if (curve) say(`${done.name}: validation accuracy by epoch ${curve}`);
  return done;
}

function sideBySide(teacher: Run, student: Run): string {
  const t = teacher.summary!;
  const s = student.summary!;
  const d = (x: number | undefined, digits = 4) => (x === undefined ? '' : x.toFixed(digits));
  const n = (x: number) => x.toLocaleString('en-US');
  const rows: [string, string, string][] = [
    ['run', teacher.id, student.id],
    ['kind', 'train (from labels)', 'distill (teacher run above)'],
    ['model', describe(teacher), describe(student)],
    ['parameters', n(t.student.params), n(s.student.params)],
    ['test accuracy', d(t.student.accuracy), d(s.student.accuracy)],
    ['calibration error (ECE)', d(t.student.ece), d(s.student.ece)],
    ['latency per example (ms)', d(t.student.latencyMs, 5), d(s.student.latencyMs, 5)],
    ['training time (s)', d(t.trainSeconds, 1), d(s.trainSeconds, 1)],
    ['training samples/s', n(Math.round(t.samplesPerSecond)), n(Math.round(s.samplesPerSecond))],
    ['backend', `${teacher.backend}, ${teacher.device}`, `${student.backend}, ${student.device}`],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const lines = [
    `${''.padEnd(w0)}  ${'TEACHER'.padEnd(w1)}  STUDENT`,
    ...rows.map(([k, a, b]) => `${k.padEnd(w0)}  ${a.padEnd(w1)}  ${b}`),
    '',
    'distillation (student vs teacher, on the 10,000 Fashion-MNIST test images):',
    `  accuracy retention   ${d(s.accuracyRetention)}  (student accuracy / teacher accuracy)`,
    `  agreement            ${d(s.agreement)}  (same predicted class)`,
    `  KL(teacher||student) ${d(s.klTeacherStudent)} nats`,
    `  compression          ${d(s.compression, 1)}× fewer parameters`,
    `  speedup              ${d(s.speedup, 1)}× faster inference per example`,
  ];
  return lines.join('\n');
}

function describe(r: Run): string {
  const st = (r.spec as { student: { preset?: string; hidden?: number[]; filters?: number[] } }).student;
  if (st.preset === 'mlp') return `MLP 784-${(st.hidden ?? []).join('-')}-10`;
  if (st.preset === 'cnn') return `CNN filters ${(st.filters ?? []).join(',')}`;
  return 'custom';
}

async function main() {
  const t0 = Date.now();
  const missing = await ensureDebianPackages(STACK_PACKAGES, say);
  if (missing.length)
    throw new Error(`missing Debian packages ${missing.join(' ')}: run as root, or install them`);
  if (!existsSync(path.join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz')))
    throw new Error('Fashion-MNIST not found');

  const services = await provideServices({ dir: dataDir, durable: true, log: say });
  say(`Postgres and Redis: ${services.source}`);
  let stack: Awaited<ReturnType<typeof startRetort>> | undefined;
  try {
    const m = await migrate(services.databaseUrl);
    say(`migrations: ${m.applied.length} applied, ${m.alreadyApplied.length} already in place`);
    stack = await startRetort({
      databaseUrl: services.databaseUrl,
      redisUrl: services.redisUrl,
      dataRoots: ['/usr/share/datasets'],
      logDir: path.join(dataDir, 'logs'),
      ...(process.env.RETORT_ADMIN_KEY ? { adminKey: process.env.RETORT_ADMIN_KEY } : {}),
    });
    say(
      `API at ${stack.baseUrl} (OpenAPI: ${stack.baseUrl}/docs), 1 worker; logs in ${path.join(dataDir, 'logs')}`,
    );
    const client = new RetortClient(stack.baseUrl, stack.adminKey);
    const session = randomUUID();

    const teacherSpec = example('fmnist-teacher.json');
    const { run: teacherRun } = await client.submit(teacherSpec, {
      idempotencyKey: `demo-${session}-teacher`,
    });
    say(
      `submitted teacher run ${teacherRun.id}: ${describe(teacherRun)} trained on the 60,000 training images`,
    );
    const teacher = await follow(client, teacherRun);

    const distillSpec = { ...example('fmnist-distill.json'), teacher: { run: teacher.id } };
    const { run: studentRun } = await client.submit(distillSpec, {
      idempotencyKey: `demo-${session}-student`,
    });
    say(`submitted distillation run ${studentRun.id}: ${describe(studentRun)} learns from the teacher`);
    const student = await follow(client, studentRun);

    console.log(`\n${sideBySide(teacher, student)}\n`);
    say(
      `the student loads with tf.loadLayersModel('${client.modelUrl(student.id)}', { requestInit: { headers: { Authorization: 'Bearer <key>' } } })`,
    );
    say(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    if (keep) {
      say(
        `--keep: the service stays up at ${stack.baseUrl} with admin key ${stack.adminKey}; Ctrl-C stops it`,
      );
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
  } finally {
    await stack?.stop();
    await services.stop();
  }
}

main().catch((e) => {
  console.error(`[retort] failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
