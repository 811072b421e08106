import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RunError } from '@retort/spec';
import type { BackendName } from '@retort/trainer';
import type { FromChild, ToChild } from './protocol.js';

const CHILD = fileURLToPath(new URL('./training-child.js', import.meta.url));

export type TrainingResult =
  | Extract<FromChild, { type: 'succeeded' | 'canceled' | 'failed' }>
  | { type: 'crashed'; error: RunError };

/** The worker's handle on one training process. */
export class TrainingProcess {
  readonly result: Promise<TrainingResult>;
  private readonly child: ChildProcess;
  private final: TrainingResult | undefined;

  constructor(onMessage: (m: FromChild) => void) {
    this.child = fork(CHILD, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.result = new Promise((resolve) => {
      this.child.on('message', (m: FromChild) => {
        if (m.type === 'succeeded' || m.type === 'canceled' || m.type === 'failed') this.final = m;
        else onMessage(m);
      });
      this.child.on('close', (code, signal) => {
        resolve(
          this.final ?? {
            type: 'crashed',
            error: {
              code: 'RETORT_WORKER_LOST',
              message: `the training process ended unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`})`,
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

  kill(): void {
    this.child.kill('SIGKILL');
  }

  get pid(): number | undefined {
    return this.child.pid;
  }
}

/** Starts a training process only to learn which backend it picks; it exits right after. */
export async function probeBackend(
  prefer?: BackendName,
): Promise<{ name: BackendName; device: string; skipped: string[] }> {
  let found: { name: BackendName; device: string; skipped: string[] } | undefined;
  const p = new TrainingProcess((m) => {
    if (m.type === 'backend') found = { name: m.name, device: m.device, skipped: m.skipped };
  });
  p.send({ type: 'probe', backend: prefer });
  await p.result;
  if (!found) throw new Error('the training process could not start a compute backend');
  return found;
}
