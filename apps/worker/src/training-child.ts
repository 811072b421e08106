import { isRetortError } from '@retort/spec';
import { type BackendName, initBackend, type SavedModel, type StopRequest, train } from '@retort/trainer';
import { policyByteSource } from '@retort/uri-policy';
import { describeFailure } from './failure.js';
import type { FromChild, ToChild } from './protocol.js';

/**
 * The training process. TensorFlow ops block the event loop for the length of a step, so training
 * runs here while the worker process keeps its BullMQ lock renewed and its heartbeat going. This
 * process talks only to its parent, over IPC: it has no Postgres or Redis address (the worker
 * leaves them out of its environment) and reads data only through the URI policy.
 */

const send = (m: FromChild) =>
  new Promise<void>((resolve, reject) => process.send!(m, undefined, {}, (e) => (e ? reject(e) : resolve())));

const PROGRESS_EVERY_MS = 200;
let lastProgress = -Infinity;
let stop: StopRequest = null;
let nextCheckpoint = 1;
const checkpointAcks = new Map<number, (error?: string) => void>();
let nextCacheRequest = 1;
const cacheAnswers = new Map<number, (bytes: Uint8Array | null) => void>();
let backendReady: ReturnType<typeof initBackend> | undefined;

async function chooseBackend(prefer: BackendName | undefined) {
  backendReady ??= initBackend(prefer);
  const b = await backendReady;
  await send({ type: 'backend', name: b.name, device: b.device, skipped: b.skipped });
  return b;
}

async function run(m: Extract<ToChild, { type: 'start' }>): Promise<void> {
  const backend = await chooseBackend(m.backend);
  const teacherModels = m.teacherModels;
  const outcome = await train(
    m.spec,
    {
      source: policyByteSource(m.policy, m.maxReadBytes ? { maxBytes: m.maxReadBytes } : {}),
      loadRunModel: async (id): Promise<SavedModel> => {
        const model = teacherModels[id];
        if (!model) throw new Error(`the model of run ${id} was not provided`);
        return model;
      },
      onMetrics: (points) => void send({ type: 'metrics', points }),
      onProgress: (progress) => {
        // The worker writes progress once a second; a few messages a second are plenty.
        const now = performance.now();
        if (now - lastProgress >= PROGRESS_EVERY_MS || progress.step === progress.totalSteps) {
          lastProgress = now;
          void send({ type: 'progress', progress });
        }
      },
      onCheckpoint: async (c) => {
        const id = nextCheckpoint++;
        const stored = new Promise<string | undefined>((resolve) => checkpointAcks.set(id, resolve));
        await send({
          type: 'checkpoint',
          id,
          position: c.position,
          valAccuracy: c.valAccuracy,
          bytes: c.bytes,
        });
        const error = await stored;
        if (error) throw new Error(`checkpoint not stored: ${error}`);
      },
      shouldStop: () => stop,
      teacherCache: {
        load: async (key) => {
          const id = nextCacheRequest++;
          const found = new Promise<Uint8Array | null>((resolve) => cacheAnswers.set(id, resolve));
          await send({ type: 'cache-get', id, key });
          return found;
        },
        store: async (key, bytes) => send({ type: 'cache-put', key, bytes }),
      },
      ...(m.teacherCacheMaxBytes !== undefined ? { teacherCacheMaxBytes: m.teacherCacheMaxBytes } : {}),
      log: (message) => void send({ type: 'log', message }),
    },
    backend,
    { resume: m.resume },
  );
  if (outcome.status === 'succeeded')
    await send({ type: 'succeeded', summary: outcome.summary, student: outcome.student });
  else await send({ type: outcome.status, position: outcome.position });
}

process.on('message', (m: ToChild) => {
  switch (m.type) {
    case 'warm':
      chooseBackend(m.backend).catch(() => process.exit(1));
      break;
    case 'start':
      run(m).then(
        () => process.exit(0),
        async (e: unknown) => {
          if (!isRetortError(e)) console.error(e);
          await send({ type: 'failed', ...describeFailure(e) }).catch(() => {});
          process.exit(0);
        },
      );
      break;
    case 'cancel':
      stop = 'cancel';
      break;
    case 'stop':
      stop ??= 'checkpoint';
      break;
    case 'cache-found':
      cacheAnswers.get(m.id)?.(m.bytes);
      cacheAnswers.delete(m.id);
      break;
    case 'checkpoint-stored':
      checkpointAcks.get(m.id)?.(m.error);
      checkpointAcks.delete(m.id);
      break;
  }
});

// Without a parent there is nothing to do; when it goes away, so do we.
if (!process.send) {
  console.error('training-child runs under the Retort worker only');
  process.exit(2);
}
process.on('disconnect', () => process.exit(1));
