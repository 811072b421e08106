import type { RunError, RunSpec, RunSummary } from '@retort/spec';
import type { BackendName, MetricPoint, Progress, SavedModel, TrainingPosition } from '@retort/trainer';
import type { UriPolicy } from '@retort/uri-policy';

/** Messages between the worker and its training process (Node IPC, structured clone). */

export type ToChild =
  /** Load TensorFlow and start the backend now, then wait for `start` (a warm spare process). */
  | { type: 'warm'; backend?: BackendName | undefined }
  | {
      type: 'start';
      spec: RunSpec;
      /** What the run may read: the server's policy narrowed to the team's data roots. */
      policy: UriPolicy;
      /** The largest file it may read. */
      maxReadBytes?: number | undefined;
      backend?: BackendName | undefined;
      /** The models of `{ run }` teachers, by run id, read from Postgres by the worker. */
      teacherModels: Record<string, SavedModel>;
      /** The run's latest checkpoint, to continue from. */
      resume?: Uint8Array | undefined;
      /** The most memory the run's teacher-output cache may take. */
      teacherCacheMaxBytes?: number | undefined;
    }
  /** Stop before the next step, as it is. */
  | { type: 'cancel' }
  /** Checkpoint before the next step, then stop (pause, shutdown). */
  | { type: 'stop' }
  | { type: 'checkpoint-stored'; id: number; error?: string }
  | { type: 'cache-found'; id: number; bytes: Uint8Array | null };

export type FromChild =
  | { type: 'backend'; name: BackendName; device: string; skipped: string[] }
  | { type: 'log'; message: string }
  | { type: 'metrics'; points: MetricPoint[] }
  | { type: 'progress'; progress: Progress }
  | {
      type: 'checkpoint';
      id: number;
      position: TrainingPosition;
      valAccuracy?: number | undefined;
      bytes: Uint8Array;
    }
  | { type: 'succeeded'; summary: RunSummary; student: SavedModel }
  | { type: 'canceled'; position: TrainingPosition }
  | { type: 'stopped'; position: TrainingPosition }
  | { type: 'failed'; error: RunError; retryable: boolean }
  /** Asks for a stored teacher-output cache; answered by `cache-found`. */
  | { type: 'cache-get'; id: number; key: string }
  /** Hands over a teacher-output cache to store for later runs. */
  | { type: 'cache-put'; key: string; bytes: Uint8Array };
