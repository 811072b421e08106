/**
 * What the service costs beside the training itself: the same distillation run by the trainer alone
 * (in this process, no services) and through the whole service (HTTP, queue, worker process,
 * Postgres), alternated, two of each. Prints samples per second of both, their ratio, and the time
 * from submit to the first training step.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RetortClient } from '@retort/client';
import { migrate } from '@retort/db';
import { provideServices, REPO_ROOT, startRetort } from '@retort/devstack';
import { parseSpec, type RunSpec } from '@retort/spec';
import { initBackend, train } from '@retort/trainer';
import { policyByteSource } from '@retort/uri-policy';

const F = 'file:///usr/share/datasets/fashion-mnist';
const FIXTURES = path.join(REPO_ROOT, 'packages/trainer/fixtures');
const EPOCHS = Number(process.env.BENCH_EPOCHS ?? 3);
const specInput = {
  name: 'bench-service-overhead',
  teacher: { uri: `file://${FIXTURES}/fmnist-mlp-teacher.onnx`, format: 'onnx' },
  student: { preset: 'mlp', hidden: [256, 128] },
  data: {
    train: {
      format: 'idx',
      images: `${F}/train-images-idx3-ubyte.gz`,
      labels: `${F}/train-labels-idx1-ubyte.gz`,
    },
    validation: {
      format: 'idx',
      images: `${F}/t10k-images-idx3-ubyte.gz`,
      labels: `${F}/t10k-labels-idx1-ubyte.gz`,
    },
  },
  training: { epochs: EPOCHS, batchSize: 128, seed: 1 },
};
const spec: RunSpec = parseSpec(specInput);
const SAMPLES = 60_000 * EPOCHS;
const REPS = Number(process.env.BENCH_REPS ?? 3);

interface Measure {
  wallSeconds: number;
  loopSamplesPerSecond: number;
  accuracy: number;
}

async function alone(): Promise<Measure> {
  const t0 = performance.now();
  const backend = await initBackend();
  const out = await train(
    spec,
    {
      source: policyByteSource({ dataRoots: ['/usr/share/datasets', FIXTURES], allowedHosts: [] }),
      loadRunModel: async () => {
        throw new Error('unused');
      },
      onMetrics: () => {},
      onProgress: () => {},
      onCheckpoint: async () => {},
      shouldStop: () => null,
      log: () => {},
    },
    backend,
  );
  if (out.status !== 'succeeded') throw new Error('trainer run did not succeed');
  return {
    wallSeconds: (performance.now() - t0) / 1000,
    loopSamplesPerSecond: out.summary.samplesPerSecond,
    accuracy: out.summary.student.accuracy,
  };
}

async function viaService(client: RetortClient): Promise<Measure & { firstStepSeconds: number }> {
  const submitted = performance.now();
  const { run } = await client.submit(specInput);
  let firstStep = 0;
  for (;;) {
    const r = await client.run(run.id);
    if (r.progress.step >= 1 || ['succeeded', 'failed', 'canceled'].includes(r.status)) break;
    await new Promise((res) => setTimeout(res, 10));
  }
  firstStep = (performance.now() - submitted) / 1000;
  const done = await client.wait(run.id, { intervalMs: 200 });
  if (done.status !== 'succeeded') throw new Error(`service run ${done.status}: ${done.error?.message}`);
  const wall = (new Date(done.finishedAt!).getTime() - new Date(done.startedAt!).getTime()) / 1000;
  return {
    wallSeconds: wall,
    loopSamplesPerSecond: done.summary!.samplesPerSecond,
    accuracy: done.summary!.student.accuracy,
    firstStepSeconds: firstStep,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const dir = mkdtempSync(path.join(tmpdir(), 'retort-bench-'));
  const services = await provideServices({ dir, durable: false });
  try {
    await migrate(services.databaseUrl);
    const stack = await startRetort({
      databaseUrl: services.databaseUrl,
      redisUrl: services.redisUrl,
      dataRoots: ['/usr/share/datasets', FIXTURES],
      logDir: path.join(dir, 'logs'),
    });
    try {
      const client = new RetortClient(stack.baseUrl, stack.adminKey);
      const a: Measure[] = [];
      const s: (Measure & { firstStepSeconds: number })[] = [];
      for (let i = 0; i < REPS; i++) {
        a.push(await alone());
        s.push(await viaService(client));
      }
      const rate = (m: Measure) => SAMPLES / m.wallSeconds;
      const ra = median(a.map(rate));
      const rs = median(s.map(rate));
      console.log(
        `\nservice overhead — ${spec.name}: ONNX teacher → MLP 784-256-128-10, Fashion-MNIST 60,000 × ${EPOCHS} epochs`,
      );
      console.log('                                   trainer alone    through the service');
      console.log(
        `whole run, samples/s (median)      ${ra.toFixed(0).padStart(13)}    ${rs.toFixed(0).padStart(19)}`,
      );
      console.log(
        `  wall seconds, each run           ${a
          .map((m) => m.wallSeconds.toFixed(1))
          .join(', ')
          .padStart(13)}    ${s
          .map((m) => m.wallSeconds.toFixed(1))
          .join(', ')
          .padStart(19)}`,
      );
      console.log(
        `training loop, samples/s (median)  ${median(a.map((m) => m.loopSamplesPerSecond))
          .toFixed(0)
          .padStart(13)}    ${median(s.map((m) => m.loopSamplesPerSecond))
          .toFixed(0)
          .padStart(19)}`,
      );
      console.log(
        `student accuracy                   ${a[0]!.accuracy.toFixed(4).padStart(13)}    ${s[0]!.accuracy.toFixed(4).padStart(19)}`,
      );
      console.log(`\nratio, service / trainer alone (whole run): ${(rs / ra).toFixed(3)}   (target ≥ 0.95)`);
      console.log(
        `submit → first training step: ${s.map((m) => `${m.firstStepSeconds.toFixed(2)} s`).join(', ')}`,
      );
      console.log(
        '(the service figure is samples / (finishedAt − startedAt): worker claim, process start, data and teacher loading, training, evaluation and storing the model)',
      );
    } finally {
      await stack.stop();
    }
  } finally {
    await services.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
