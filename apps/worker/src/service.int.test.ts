import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { RetortClient, type Run } from '@retort/client';
import { migrate } from '@retort/db';
import {
  fashionMnistData,
  freshDatabase,
  freshQueuePrefix,
  parseEventStream,
  type RetortStack,
  startRetort,
} from '@retort/devstack';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

/**
 * The whole service as it runs in production: the API and a worker as separate processes, real
 * Postgres and Redis, real Fashion-MNIST, driven over HTTP with the client a user would use.
 */

const FIXTURES = fileURLToPath(new URL('../../../packages/trainer/fixtures/', import.meta.url));
const data = fashionMnistData;

function validationSet(n: number) {
  const images = gunzipSync(readFileSync('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz'));
  const labels = gunzipSync(readFileSync('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz'));
  return {
    x: Float32Array.from(images.subarray(16, 16 + n * 784), (v) => v / 255),
    y: labels.subarray(8, 8 + n),
  };
}

describe('Retort end to end (API and worker processes)', () => {
  let stack: RetortStack;
  let client: RetortClient;
  let teacher: Run;
  const scratch = mkdtempSync(path.join(tmpdir(), 'retort-e2e-data-'));

  beforeAll(async () => {
    const databaseUrl = await freshDatabase(inject('postgresServerUrl'), 'e2e');
    await migrate(databaseUrl);
    stack = await startRetort({
      databaseUrl,
      redisUrl: inject('redisUrl'),
      queuePrefix: freshQueuePrefix('e2e'),
      dataRoots: ['/usr/share/datasets', FIXTURES, scratch],
      logDir: path.join(tmpdir(), `retort-e2e-${process.pid}`),
      env: { RETORT_METRICS_FLUSH_MS: '200', LOG_LEVEL: 'warn' },
    });
    client = new RetortClient(stack.baseUrl, stack.adminKey);
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('trains a teacher, distils it into a smaller student, and serves metrics, summary and model', async () => {
    const { run: t } = await client.submit({
      name: 'e2e-teacher',
      kind: 'train',
      student: { preset: 'mlp', hidden: [64] },
      data: data(600, 300),
      training: { epochs: 3, batchSize: 50, seed: 1 },
    });
    teacher = await client.wait(t.id, { intervalMs: 300, timeoutMs: 120_000 });
    expect(teacher.status).toBe('succeeded');
    expect(teacher.backend).toBe('wasm');

    const { run: s } = await client.submit({
      name: 'e2e-student',
      teacher: { run: teacher.id },
      student: { preset: 'mlp', hidden: [16] },
      data: data(400, 300),
      training: { epochs: 2, batchSize: 50, seed: 2 },
    });
    const student = await client.wait(s.id, { intervalMs: 300, timeoutMs: 120_000 });
    expect(student.status).toBe('succeeded');
    expect(student.progress).toEqual({ epoch: 2, step: 16, totalSteps: 16 });
    expect(student.attempt).toBe(1);

    const sum = student.summary!;
    expect(sum.teacher!.accuracy).toBe(teacher.summary!.student.accuracy);
    expect(sum.teacher!.params).toBe(784 * 64 + 64 + 64 * 10 + 10);
    expect(sum.student.params).toBe(784 * 16 + 16 + 16 * 10 + 10);
    expect(sum.compression).toBeCloseTo(sum.teacher!.params / sum.student.params, 10);
    expect(sum.accuracyRetention).toBeCloseTo(sum.student.accuracy / sum.teacher!.accuracy, 10);
    for (const k of ['agreement', 'klTeacherStudent', 'speedup'] as const) expect(sum[k]).toBeGreaterThan(0);

    // Metrics: a loss point per step, validation figures per epoch, all in Postgres.
    const m = await client.metrics(student.id);
    const byName = Object.fromEntries(m.series.map((x) => [x.name, x.points]));
    expect(byName.loss?.map(([step]) => step)).toEqual([...Array(16).keys()].map((i) => i + 1));
    expect(byName.loss_kd).toHaveLength(16);
    expect(byName.val_accuracy?.map(([step]) => step)).toEqual([8, 16]);
    expect(byName.val_accuracy?.at(-1)?.[1]).toBeCloseTo(sum.student.accuracy, 10);

    // The student, straight from the API with tf.loadLayersModel, scores what the summary says.
    const model = await tf.loadLayersModel(client.modelUrl(student.id), {
      requestInit: { headers: client.authHeaders() },
    });
    const { x, y } = validationSet(300);
    const pred = tf.tidy(() =>
      (model.predict(tf.tensor(x, [300, 28, 28, 1])) as tf.Tensor).argMax(1).dataSync(),
    );
    let hits = 0;
    for (let i = 0; i < 300; i++) if (pred[i] === y[i]) hits++;
    expect(hits / 300).toBeCloseTo(sum.student.accuracy, 10);

    const artifacts = await client.artifacts(student.id);
    expect(artifacts.map((a) => `${a.kind}/${a.name}`).sort()).toEqual(
      expect.arrayContaining([
        'report/summary.json',
        'student-model/model.json',
        'student-model/weights.bin',
      ]),
    );
    const report = JSON.parse(
      new TextDecoder().decode(await client.download(artifacts.find((a) => a.name === 'summary.json')!.id)),
    );
    expect(report).toEqual(sum);
  });

  it('distils from an ONNX teacher exported by PyTorch', async () => {
    const { run } = await client.submit({
      name: 'e2e-onnx',
      teacher: { uri: `file://${FIXTURES}fmnist-mlp-teacher.onnx`, format: 'onnx' },
      student: { preset: 'mlp', hidden: [16] },
      data: data(300, 200),
      training: { epochs: 1, batchSize: 50 },
    });
    const done = await client.wait(run.id, { intervalMs: 300, timeoutMs: 120_000 });
    expect(done.status).toBe('succeeded');
    expect(done.summary?.teacher).toMatchObject({ params: 50890, runtime: 'onnxruntime-cpu' });
  });

  it('stores the teacher’s outputs as an artifact, and a later run with the same teacher and data reads them', async () => {
    const spec = {
      name: 'e2e-cache',
      teacher: { uri: `file://${FIXTURES}fmnist-mlp-teacher.onnx`, format: 'onnx' },
      student: { preset: 'mlp', hidden: [16] },
      data: data(400, 100),
      training: { epochs: 2, batchSize: 50, seed: 4 },
    };
    const first = await client.wait((await client.submit(spec)).run.id, {
      intervalMs: 300,
      timeoutMs: 120_000,
    });
    const second = await client.wait((await client.submit(spec)).run.id, {
      intervalMs: 300,
      timeoutMs: 120_000,
    });
    expect(first.summary?.teacherCache).toBe('stored');
    expect(second.summary?.teacherCache).toBe('hit');
    const hash = async (id: string) =>
      (await client.artifacts(id)).find((a) => a.name === 'weights.bin')?.sha256;
    expect(await hash(second.id)).toBe(await hash(first.id));
    expect((await client.artifacts(first.id)).filter((a) => a.kind === 'teacher-cache')).toHaveLength(1);
  });

  it('cancels a running run before its next step, keeping what it logged', async () => {
    const { run } = await client.submit({
      name: 'e2e-cancel',
      kind: 'train',
      student: { preset: 'mlp', hidden: [256, 256] },
      data: data(60000, 100),
      training: { epochs: 50, batchSize: 32 },
    });
    let r = run;
    while (r.status === 'queued' || r.progress.step < 20) {
      await new Promise((res) => setTimeout(res, 100));
      r = await client.run(run.id);
    }
    const canceledAt = Date.now();
    await client.cancel(run.id);
    const done = await client.wait(run.id, { intervalMs: 100, timeoutMs: 60_000 });
    expect(done.status).toBe('canceled');
    expect(Date.now() - canceledAt).toBeLessThan(10_000);
    const loss = (await client.metrics(run.id, { names: ['loss'] })).series[0]!.points;
    // Every step taken was logged, and the run's progress says where it stopped.
    expect(loss.map(([s]) => s)).toEqual([...Array(done.progress.step).keys()].map((i) => i + 1));
    expect((await client.artifacts(run.id)).filter((a) => a.kind === 'student-model')).toEqual([]);
  });

  it('fails a run that cannot proceed at once, with a code and a reason, without retrying', async () => {
    const notAModel = path.join(scratch, 'not-a-model.onnx');
    writeFileSync(notAModel, 'this is not an ONNX model');
    const { run } = await client.submit({
      name: 'e2e-bad-teacher',
      teacher: { uri: `file://${notAModel}`, format: 'onnx' },
      student: { preset: 'mlp' },
      data: data(100, 50),
    });
    const done = await client.wait(run.id, { intervalMs: 200, timeoutMs: 60_000 });
    expect(done.status).toBe('failed');
    expect(done.attempt).toBe(1);
    expect(done.error?.code).toBe('RETORT_TEACHER_UNREADABLE');
    expect(done.error?.message).toMatch(/not-a-model.onnx is not an ONNX model/);
  });

  it('lets a pipeline gate on a run with the CLI: exit 0 when it passes, 3 when it does not', async () => {
    const cli = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
    const env = { ...process.env, RETORT_URL: stack.baseUrl, RETORT_API_KEY: stack.adminKey };
    const gate = (min: string) =>
      spawnSync(process.execPath, [cli, 'wait', teacher.id, '--min-accuracy', min], {
        env,
        encoding: 'utf8',
      });
    expect(gate('0.1').status).toBe(0);
    const failed = gate('0.999');
    expect(failed.status).toBe(3);
    expect(failed.stderr).toMatch(/gate failed: accuracy 0\.\d+ < 0\.999/);
  });

  it('answers a submit with ?wait=true when the run ends, with a verdict on its accept thresholds', async () => {
    const submit = async (accept: object) => {
      const res = await fetch(`${stack.baseUrl}/v1/runs?wait=true&timeout=120`, {
        method: 'POST',
        headers: { ...client.authHeaders(), 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'gated',
          kind: 'train',
          student: { preset: 'mlp', hidden: [16] },
          data: data(600, 200),
          training: { epochs: 4, batchSize: 50, seed: 3, optimizer: { type: 'adam', learningRate: 0.003 } },
          accept,
        }),
      });
      return { status: res.status, run: (await res.json()) as Run };
    };
    const pass = await submit({ 'student.accuracy': { gte: 0.3 }, 'student.params': { lt: 100_000 } });
    expect(pass.status).toBe(201);
    expect(pass.run.status).toBe('succeeded');
    expect(pass.run.verdict).toMatchObject({ passed: true, reason: 'every threshold holds (2)' });
    const accuracy = pass.run.summary!.student.accuracy;
    expect(pass.run.verdict!.checks[0]).toEqual({
      metric: 'student.accuracy',
      op: 'gte',
      threshold: 0.3,
      value: accuracy,
      passed: true,
    });
    const fail = await submit({ 'student.accuracy': { gte: 0.999 } });
    expect(fail.run.status).toBe('succeeded');
    expect(fail.run.verdict!.passed).toBe(false);
    expect(fail.run.verdict!.reason).toMatch(/^student\.accuracy 0\.\d+ is not ≥ 0\.999$/);
    // The CLI turns the verdict into an exit code.
    const cli = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
    const env = { ...process.env, RETORT_URL: stack.baseUrl, RETORT_API_KEY: stack.adminKey };
    const passed = spawnSync(process.execPath, [cli, 'wait', pass.run.id], { env, encoding: 'utf8' });
    expect(passed.status).toBe(0);
    const failed = spawnSync(process.execPath, [cli, 'wait', fail.run.id], { env, encoding: 'utf8' });
    expect(failed.status).toBe(3);
    expect(failed.stderr).toMatch(/verdict: failed: student\.accuracy 0\.\d+ is not ≥ 0\.999/);
  });

  it('streams a short run live: every status change in order, progress, metrics with their points, checkpoints', async () => {
    const { run } = await client.submit({
      name: 'streamed',
      kind: 'train',
      student: { preset: 'mlp', hidden: [16] },
      data: data(400, 200),
      training: { epochs: 3, batchSize: 50, seed: 4, checkpointEvery: { epochs: 1 } },
    });
    // Opened at once; it ends by itself when the run does.
    const res = await fetch(`${stack.baseUrl}/v1/runs/${run.id}/events`, { headers: client.authHeaders() });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = parseEventStream(await res.text());
    const statuses = events
      .filter((e) => e.event === 'status')
      .map((e) => (e.data as { status: string }).status);
    expect(statuses).toEqual(['queued', 'running', 'succeeded']);
    expect(events.at(-1)).toEqual({ event: 'end', data: { status: 'succeeded' } });
    expect(events.filter((e) => e.event === 'checkpoint').length).toBeGreaterThanOrEqual(2);
    expect(events.some((e) => e.event === 'progress')).toBe(true);
    // Every loss point of the run arrives in the stream, once.
    const points = events
      .filter((e) => e.event === 'metrics')
      .flatMap((e) => (e.data as { points: { name: string; step: number }[] }).points)
      .filter((p) => p.name === 'loss')
      .map((p) => p.step);
    expect(points).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    // Ids only grow; the stream resumes after any of them.
    const ids = events.filter((e) => e.id).map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    const again = await fetch(`${stack.baseUrl}/v1/runs/${run.id}/events`, {
      headers: { ...client.authHeaders(), 'last-event-id': String(ids[1]) },
    });
    const rest = parseEventStream(await again.text()).filter((e) => e.id);
    expect(rest.map((e) => Number(e.id))).toEqual(ids.slice(2));
  });

  it('lists the worker with its backend', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/workers`, { headers: client.authHeaders() });
    const workers = (await res.json()) as { backend: string; pool: string }[];
    expect(workers).toEqual([expect.objectContaining({ backend: 'wasm', pool: 'default' })]);
  });
});
