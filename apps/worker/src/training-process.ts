import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RunError } from '@retort/spec';
import type { BackendName } from '@retort/trainer';
import type { FromChild, ToChild } from './protocol.js';

const CHILD = fileURLToPath(new URL('./training-child.js', import.meta.url));

/**
 * What a training process needs of the worker's environment: the system's (paths, locale, temp,
 * the CA certificates its downloads trust), Node's, and the compute libraries' (CUDA, TensorFlow, ONNX Runtime, OpenMP). Nothing else: no
 * database or Redis address, no keys. The run's code never sees how to reach the services.
 */
const CHILD_ENV =
  /^(PATH|HOME|USER|LANG|LANGUAGE|LC_[A-Z_]+|TZ|TMPDIR|TEMP|TMP|NODE_OPTIONS|NODE_ENV|NODE_PATH|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|UV_THREADPOOL_SIZE|LD_LIBRARY_PATH|CUDA_[A-Z0-9_]+|NVIDIA_[A-Z0-9_]+|TF_[A-Z0-9_]+|XLA_[A-Z0-9_]+|ORT_[A-Z0-9_]+|OMP_[A-Z0-9_]+|OPENBLAS_[A-Z0-9_]+|MKL_[A-Z0-9_]+)$/;

export function trainingEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => CHILD_ENV.test(k)));
}

export type TrainingResult =
  | Extract<FromChild, { type: 'succeeded' | 'canceled' | 'stopped' | 'failed' }>
  /** The process died. `beforeFirstStep`: it never reported a step in this attempt. */
  | { type: 'crashed'; error: RunError; outOfMemory: boolean; beforeFirstStep: boolean };

export type BackendReport = { name: BackendName; device: string; skipped: string[] };

/** The worker's handle on one training process. */
export class TrainingProcess {
  readonly result: Promise<TrainingResult>;
  /** Where messages other than the final one go; set by whoever runs a training in this process. */
  onMessage: (m: FromChild) => void;
  private readonly child: ChildProcess;
  private final: TrainingResult | undefined;
  private stepped = false;

  constructor(onMessage: (m: FromChild) => void = () => {}) {
    this.onMessage = onMessage;
    this.child = fork(CHILD, [], {
      env: trainingEnv(process.env),
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.result = new Promise((resolve) => {
      this.child.on('message', (m: FromChild) => {
        if (m.type === 'succeeded' || m.type === 'canceled' || m.type === 'stopped' || m.type === 'failed')
          this.final = m;
        else {
          if (m.type === 'progress') this.stepped = true;
          this.onMessage(m);
        }
      });
      // 'close' comes after the process has exited and its IPC channel has delivered everything.
      this.child.on('close', (code, signal) => {
        // V8 aborts (SIGABRT, exit 134) when its heap is exhausted.
        const outOfMemory = signal === 'SIGABRT' || code === 134;
        resolve(
          this.final ?? {
            type: 'crashed',
            outOfMemory,
            beforeFirstStep: !this.stepped,
            error: {
              code: outOfMemory ? 'RETORT_OUT_OF_MEMORY' : 'RETORT_WORKER_LOST',
              message: `the training process ${outOfMemory ? 'ran out of memory' : 'ended unexpectedly'} (${signal ? `signal ${signal}` : `exit code ${code}`})`,
            },
          },
        );
      });
      this.child.on('error', () => {});
    });
  }

  send(m: ToChild): void {
    if (this.child.connected) this.child.send(m);
  }

  cancel(): void {
    this.send({ type: 'cancel' });
  }

  /** Checkpoint before the next step, then stop. */
  stop(): void {
    this.send({ type: 'stop' });
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }

  get pid(): number | undefined {
    return this.child.pid;
  }
}

/**
 * Keeps one training process warm: TensorFlow loaded and its backend started, waiting for a run.
 * Starting one costs over a second of loading, which a run would otherwise pay before its first
 * step. A spare is made when the worker starts and after each run (not during one, where it would
 * take CPU from the training).
 */
export class WarmProcesses {
  private spare: Promise<{ proc: TrainingProcess; backend: BackendReport }> | undefined;

  constructor(private readonly prefer: BackendName | undefined) {}

  /** Makes a spare if there is none; resolves with the backend it started. */
  async prewarm(): Promise<BackendReport> {
    if (!this.spare) {
      const spare = new Promise<{ proc: TrainingProcess; backend: BackendReport }>((resolve, reject) => {
        const proc = new TrainingProcess((m) => {
          if (m.type === 'backend')
            resolve({ proc, backend: { name: m.name, device: m.device, skipped: m.skipped } });
        });
        proc.send({ type: 'warm', backend: this.prefer });
        void proc.result.then(() =>
          reject(new Error('the training process could not start a compute backend')),
        );
      });
      this.spare = spare;
      spare.catch(() => {
        if (this.spare === spare) this.spare = undefined;
      });
    }
    return (await this.spare).backend;
  }

  /** The spare process (or a new one), for a run; its messages go to `onMessage`. */
  async take(onMessage: (m: FromChild) => void): Promise<TrainingProcess> {
    if (!this.spare) void this.prewarm().catch(() => {});
    const spare = this.spare!;
    this.spare = undefined;
    const { proc } = await spare;
    proc.onMessage = onMessage;
    return proc;
  }

  dispose(): void {
    void this.spare?.then(
      ({ proc }) => proc.kill(),
      () => {},
    );
    this.spare = undefined;
  }
}
