#!/usr/bin/env node
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ApiError, RetortClient, type Run } from '@retort/client';
import { Command, Option } from 'commander';
import { loadEnv } from './env.js';
import { describeError, runLocal } from './local.js';

const env = loadEnv();
const program = new Command('retort').description(
  "Retort's command line: submit, follow and fetch distillation runs.",
);
program
  .addOption(new Option('--url <url>', 'API base URL (RETORT_URL)').default(env.url))
  .addOption(new Option('--key <key>', 'API key (RETORT_API_KEY)'))
  .option('--json', 'print JSON instead of text');

function client(): RetortClient {
  const o = program.opts<{ url: string; key?: string }>();
  const key = o.key ?? env.apiKey;
  if (!key) throw new Error('no API key: pass --key or set RETORT_API_KEY');
  return new RetortClient(o.url, key);
}

const json = () => program.opts<{ json?: boolean }>().json === true;
const print = (human: string, data: unknown) => console.log(json() ? JSON.stringify(data, null, 2) : human);
const line = (r: Run) =>
  `${r.id}  ${r.status.padEnd(9)}  ${r.name}  step ${r.progress.step}/${r.progress.totalSteps ?? '?'}` +
  (r.summary ? `  accuracy ${r.summary.student.accuracy.toFixed(4)}` : '') +
  (r.error ? `  ${r.error.code}: ${r.error.message}` : '');

/** Waits for a run and turns its outcome into an exit code a pipeline can gate on. */
async function waitAndGate(
  id: string,
  gates: { minAccuracy?: string; minRetention?: string },
): Promise<number> {
  let last = '';
  const r = await client().wait(id, {
    intervalMs: 2000,
    onUpdate: (u) => {
      const l = line(u);
      if (l !== last && !json()) console.error(l);
      last = l;
    },
  });
  print(line(r), r);
  if (r.status !== 'succeeded') return 1;
  if (r.verdict && !r.verdict.passed) {
    console.error(`verdict: failed: ${r.verdict.reason}`);
    return 3;
  }
  const s = r.summary!;
  if (gates.minAccuracy !== undefined && s.student.accuracy < Number(gates.minAccuracy)) {
    console.error(`gate failed: accuracy ${s.student.accuracy} < ${gates.minAccuracy}`);
    return 3;
  }
  if (gates.minRetention !== undefined && (s.accuracyRetention ?? 0) < Number(gates.minRetention)) {
    console.error(`gate failed: accuracy retention ${s.accuracyRetention} < ${gates.minRetention}`);
    return 3;
  }
  return 0;
}

program
  .command('submit <spec>')
  .description('submit a run spec (JSON file)')
  .option(
    '--wait',
    'wait for the run to end; exit 0 only if it succeeded and passed its accept thresholds (and the gates)',
  )
  .option('--dry-run', 'validate and check URIs without queueing')
  .option('--idempotency-key <key>', 'resubmitting with the same key returns the first run')
  .option('--min-accuracy <x>', 'with --wait: exit 3 if the student accuracy is below x')
  .option('--min-retention <x>', 'with --wait: exit 3 if accuracy retention is below x')
  .action(
    async (
      file: string,
      o: {
        wait?: boolean;
        dryRun?: boolean;
        idempotencyKey?: string;
        minAccuracy?: string;
        minRetention?: string;
      },
    ) => {
      const spec = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      const { run, created } = await client().submit(spec, {
        ...(o.idempotencyKey ? { idempotencyKey: o.idempotencyKey } : {}),
        ...(o.dryRun ? { dryRun: true } : {}),
      });
      if (o.dryRun) return print('the spec is valid', run);
      print(`${created ? 'submitted' : 'already submitted'} ${run.id}`, run);
      if (o.wait) process.exitCode = await waitAndGate(run.id, o);
    },
  );

program
  .command('get <id>')
  .description('show a run')
  .action(async (id: string) => {
    const r = await client().run(id);
    print(`${line(r)}${r.summary ? `\n${JSON.stringify(r.summary, null, 2)}` : ''}`, r);
  });

program
  .command('list')
  .description('list runs, newest first')
  .option('--status <list>', 'comma-separated statuses')
  .option('--tag <key:value...>', 'only runs with these tags')
  .option('--limit <n>', 'how many', '20')
  .action(async (o: { status?: string; tag?: string[]; limit: string }) => {
    const tags = Object.fromEntries(
      (o.tag ?? []).map((t) => [t.slice(0, t.indexOf(':')), t.slice(t.indexOf(':') + 1)]),
    );
    const page = await client().list({
      ...(o.status ? { status: o.status.split(',') as Run['status'][] } : {}),
      tags,
      limit: Number(o.limit),
    });
    print(page.items.map(line).join('\n') || '(no runs)', page);
  });

program
  .command('wait <id>')
  .description(
    'wait for a run to end; exit 0 only if it succeeded and passed its accept thresholds (and the gates); 1 if it did not succeed, 3 if it failed a threshold',
  )
  .option('--min-accuracy <x>', 'exit 3 if the student accuracy is below x')
  .option('--min-retention <x>', 'exit 3 if accuracy retention is below x')
  .action(async (id: string, o: { minAccuracy?: string; minRetention?: string }) => {
    process.exitCode = await waitAndGate(id, o);
  });

program
  .command('cancel <id>')
  .description('cancel a queued or running run')
  .action(async (id: string) => {
    const r = await client().cancel(id);
    print(line(r), r);
  });

program
  .command('metrics <id>')
  .description("print a run's metric series")
  .option('--name <names>', 'comma-separated series names')
  .option('--max-points <n>', 'downsample each series to at most n points')
  .action(async (id: string, o: { name?: string; maxPoints?: string }) => {
    const m = await client().metrics(id, {
      ...(o.name ? { names: o.name.split(',') } : {}),
      ...(o.maxPoints ? { maxPoints: Number(o.maxPoints) } : {}),
    });
    print(
      m.series
        .map((s) => `${s.name}: ${s.points.map(([st, v]) => `${st}:${v.toPrecision(4)}`).join(' ')}`)
        .join('\n'),
      m,
    );
  });

program
  .command('download <id>')
  .description("download a run's trained model (model.json + weights) into a folder")
  .requiredOption('--out <dir>', 'destination folder')
  .action(async (id: string, o: { out: string }) => {
    const c = client();
    const files = (await c.artifacts(id)).filter((a) => a.kind === 'student-model' || a.kind === 'report');
    if (!files.some((a) => a.kind === 'student-model')) throw new Error(`run ${id} has no model yet`);
    mkdirSync(o.out, { recursive: true });
    for (const a of files) writeFileSync(path.join(o.out, a.name), await c.download(a.id));
    print(`wrote ${files.map((a) => a.name).join(', ')} to ${o.out}`, files);
  });

program
  .command('local <spec>')
  .description('run a spec on this machine with no services (the same trainer, writing to a folder)')
  .option('--out <dir>', 'folder for runs', 'retort-runs')
  .action(async (file: string, o: { out: string }) => {
    const id = await runLocal(file, { out: o.out, dataRoots: env.dataRoots });
    const summary = JSON.parse(readFileSync(path.join(o.out, id, 'summary.json'), 'utf8')) as {
      student: { accuracy: number };
    };
    print(
      `run ${id} finished: accuracy ${summary.student.accuracy.toFixed(4)}; files in ${path.join(o.out, id)}`,
      { id, summary },
    );
  });

program.parseAsync().catch((e: unknown) => {
  console.error(e instanceof ApiError ? e.message : describeError(e));
  process.exitCode = e instanceof ApiError && e.status >= 500 ? 4 : 2;
});
