import { isRetortError, type RunError } from '@retort/spec';
import {
  type BackendName,
  initBackend,
  policyByteSource,
  type SavedModel,
  type StopRequest,
  train,
} from '@retort/trainer';
import type { FromChild, ToChild } from './protocol.js';

/**
 * The training process. TensorFlow ops block the event loop for the length of a step, so training
 * runs here while the worker process keeps its BullMQ lock renewed and its heartbeat going. This
 * process talks only to its parent, over IPC.
 */

const send = (m: FromChild) =>
  new Promise<void>((resolve, reject) => process.send!(m, undefined, {}, (e) => (e ? reject(e) : resolve())));

const PROGRESS_EVERY_MS = 200;
let lastProgress = -Infinity;
let stop: StopRequest = null;
let nextCheckpoint = 1;
const checkpointAcks = new Map<number, (error?: string) => void>();
let backendReady: ReturnType<typeof initBackend> | undefined;

async function chooseBackend(prefer: BackendName | undefined) {
  backendReady ??= initBackend(prefer);
  const b = await backendReady;
  await send({ type: 'backend', name: b.name, device: b.device, skipped: b.skipped });
  return b;
}

async function run(m: Extract<ToChild, { type: 'start' }>): Promise<void> {
  const backend = await chooseBackend(m.backend);
  const teacherModel = m.teacherModel;
  const outcome = await train(
    m.spec,
    {
      source: policyByteSource(m.policy),
      loadRunModel: async (id): Promise<SavedModel> => {
        if (!teacherModel) throw new Error(`the model of run ${id} was not provided`);
        return teacherModel;
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
      log: (message) => void send({ type: 'log', message }),
    },
    backend,
    { resume: m.resume },
  );
  if (outcome.status === 'succeeded')
    await send({ type: 'succeeded', summary: outcome.summary, student: outcome.student });
  else await send({ type: outcome.status, position: outcome.position });
}

/** Running out of memory says nothing a retry could change: it fails the run with advice. */
function isOutOfMemory(e: unknown): boolean {
  const msg = e instanceof Error ? `${e.name} ${e.message}` : String(e);
  return /out of memory|Array buffer allocation failed|Cannot enlarge memory|Invalid typed array length|WebAssembly\.Memory/i.test(
    msg,
  );
}

function describeFailure(e: unknown): { error: RunError; retryable: boolean } {
  if (isRetortError(e)) return { error: { code: e.code, message: e.message }, retryable: e.retryable };
  const message = e instanceof Error ? e.message : String(e);
  if (isOutOfMemory(e)) {
    return {
      error: {
        code: 'RETORT_OUT_OF_MEMORY',
        message: `training ran out of memory (${message}); lower training.batchSize or the model's size`,
      },
      retryable: false,
    };
  }
  // An error raised here comes back on every attempt with the same spec and data: only a process
  // that dies (killed, lost) is worth another attempt.
  return {
    error: { code: 'RETORT_TRAINING_FAILED', message: `training failed: ${message}` },
    retryable: false,
  };
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
