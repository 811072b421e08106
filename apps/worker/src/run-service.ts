import {
  claimRun,
  type Db,
  FencedOutError,
  finishRun,
  getRunById,
  keepLatestArtifacts,
  putArtifact,
  readArtifactByName,
  requeueRun,
  setRunBackend,
  updateProgress,
} from '@retort/db';
import { RetortError, type RunError, type RunSpec } from '@retort/spec';
import type { BackendName, Progress, SavedModel } from '@retort/trainer';
import type { Logger } from 'pino';
import { MetricWriter } from './metric-writer.js';
import type { FromChild } from './protocol.js';
import type { TrainingProcess, TrainingResult, WarmProcesses } from './training-process.js';

export interface RunServiceOptions {
  db: Db;
  log: Logger;
  worker: { id: string; backend: string; device: string };
  policy: { dataRoots: string[]; allowedHosts: string[] };
  backend?: BackendName | undefined;
  /** Where training processes come from (a warm spare when there is one). */
  processes: WarmProcesses;
  metricsFlushMs: number;
  /** How many checkpoints of a run to keep (the newest). */
  keepCheckpoints?: number;
}

export interface AttemptInfo {
  /** Attempts BullMQ has already made of this job before this one. */
  attemptsMade: number;
  maxAttempts: number;
}

const PROGRESS_WRITE_MS = 1000;

/** Thrown to BullMQ when an attempt should be retried (after backoff) rather than end the run. */
export class RetryableRunError extends Error {}

/**
 * Executes runs: claims one in Postgres, trains it in a child process, streams its metrics and
 * checkpoints to Postgres, stores the student and records the outcome. All writes carry the
 * attempt number; once another attempt holds the run, they are refused and this one stops.
 */
export class RunService {
  private current: { runId: string; attempt: number; proc: TrainingProcess } | undefined;
  private stopping = false;

  constructor(private readonly o: RunServiceOptions) {}

  get currentRunId(): string | null {
    return this.current?.runId ?? null;
  }

  /** Cancel signal from the control channel; ignored unless it names the run in progress. */
  cancel(runId: string): void {
    if (this.current?.runId === runId) {
      this.o.log.info({ runId }, 'cancel requested');
      this.current.proc.cancel();
    }
  }

  /** Stops the run in progress so that it goes back to the queue (worker shutdown). */
  stop(): void {
    this.stopping = true;
    this.current?.proc.kill();
  }

  async execute(runId: string, attemptInfo: AttemptInfo): Promise<void> {
    const { db, log } = this.o;
    const run = await claimRun(db, runId, this.o.worker);
    if (!run) {
      log.info({ runId }, 'run is no longer waiting (canceled or finished); skipping');
      return;
    }
    const attempt = run.attempt;
    const spec = run.spec as unknown as RunSpec;
    const rlog = log.child({ runId, attempt });
    rlog.info({ kind: spec.kind, name: spec.name }, 'run claimed');
    try {
      let teacherModel: SavedModel | undefined;
      if (spec.teacher && 'run' in spec.teacher)
        teacherModel = await this.teacherFromRun(run.teamId, spec.teacher.run);
      const result = await this.train(runId, attempt, spec, teacherModel, rlog);
      await this.conclude(runId, attempt, result, attemptInfo, rlog);
    } catch (e) {
      if (e instanceof FencedOutError) {
        rlog.warn({ err: e.message }, 'lost the claim on this run; its writes are refused, stopping');
        this.current?.proc.kill();
        return;
      }
      if (e instanceof RetortError && !e.retryable) {
        await finishRun(db, runId, attempt, {
          status: 'failed',
          error: { code: e.code, message: e.message },
        });
        rlog.info({ code: e.code }, 'run failed');
        return;
      }
      throw e;
    } finally {
      this.current = undefined;
      // Ready the next run's process now that this one no longer needs the CPU.
      if (!this.stopping)
        this.o.processes
          .prewarm()
          .catch((e) => log.warn({ err: String(e) }, 'could not start a spare training process'));
    }
  }

  private async teacherFromRun(teamId: string, teacherRunId: string): Promise<SavedModel> {
    const t = await getRunById(this.o.db, teacherRunId);
    if (!t || t.teamId !== teamId)
      throw new RetortError('RETORT_TEACHER_NOT_READY', `teacher run ${teacherRunId} does not exist`);
    if (t.status !== 'succeeded') {
      throw new RetortError(
        'RETORT_TEACHER_NOT_READY',
        `teacher run ${teacherRunId} is ${t.status}; it must have succeeded to teach`,
      );
    }
    const [modelJson, weights] = await Promise.all([
      readArtifactByName(this.o.db, teacherRunId, 'student-model', 'model.json'),
      readArtifactByName(this.o.db, teacherRunId, 'student-model', 'weights.bin'),
    ]);
    return { modelJson, weights };
  }

  private async train(
    runId: string,
    attempt: number,
    spec: RunSpec,
    teacherModel: SavedModel | undefined,
    log: Logger,
  ) {
    const { db } = this.o;
    let fenced: FencedOutError | undefined;
    const onWriteError = (e: unknown) => {
      if (e instanceof FencedOutError) {
        fenced ??= e;
        proc.kill();
      } else log.warn({ err: String(e) }, 'write to Postgres failed; will retry');
    };
    const metrics = new MetricWriter(db, runId, attempt, {
      intervalMs: this.o.metricsFlushMs,
      onError: onWriteError,
    });
    let lastProgressWrite = 0;
    let latest: Progress | undefined;
    let progressWrites: Promise<void> = Promise.resolve();
    const writeProgress = async (p: Progress) => {
      // The trainer counts epochs from 0; the API shows the epoch in progress counted from 1.
      const epoch = Math.min(p.epoch + 1, spec.training.epochs);
      const { cancelRequested } = await updateProgress(db, runId, attempt, {
        epoch,
        step: p.step,
        totalSteps: p.totalSteps,
      });
      // The control channel is the fast path; this catches a cancel whose message was missed.
      if (cancelRequested) proc.cancel();
    };
    const onMessage = (m: FromChild) => {
      switch (m.type) {
        case 'backend':
          log.info({ backend: m.name, device: m.device, skipped: m.skipped }, 'compute backend chosen');
          setRunBackend(db, runId, attempt, m.name, m.device).catch(onWriteError);
          break;
        case 'log':
          log.info(m.message);
          break;
        case 'metrics':
          metrics.add(m.points);
          break;
        case 'progress':
          latest = m.progress;
          if (Date.now() - lastProgressWrite >= PROGRESS_WRITE_MS) {
            lastProgressWrite = Date.now();
            // One write at a time, in order: a slow write must not land after a newer one.
            progressWrites = progressWrites.then(() => writeProgress(m.progress)).catch(onWriteError);
          }
          break;
        case 'checkpoint':
          this.storeCheckpoint(runId, attempt, m.position.step, m.bytes).then(
            () => proc.send({ type: 'checkpoint-stored', id: m.id }),
            (e) => {
              onWriteError(e);
              proc.send({ type: 'checkpoint-stored', id: m.id, error: String(e) });
            },
          );
          break;
      }
    };
    const proc = await this.o.processes.take(onMessage);
    this.current = { runId, attempt, proc };
    proc.send({ type: 'start', spec, policy: this.o.policy, backend: this.o.backend, teacherModel });
    const result = await proc.result;
    metrics.close();
    if (fenced) throw fenced;
    await metrics.drain();
    if (metrics.fenced) throw metrics.fenced;
    // Progress messages are throttled; a canceled run's last position comes with its result.
    if (result.type === 'canceled' && latest) latest = { ...latest, ...result.position };
    await progressWrites;
    if (latest) await writeProgress(latest);
    return result;
  }

  private async storeCheckpoint(
    runId: string,
    attempt: number,
    step: number,
    bytes: Uint8Array,
  ): Promise<void> {
    await putArtifact(this.o.db, {
      runId,
      attempt,
      kind: 'checkpoint',
      name: `step-${String(step).padStart(9, '0')}`,
      bytes,
    });
    await keepLatestArtifacts(this.o.db, runId, 'checkpoint', this.o.keepCheckpoints ?? 2);
  }

  private async conclude(
    runId: string,
    attempt: number,
    result: TrainingResult,
    info: AttemptInfo,
    log: Logger,
  ): Promise<void> {
    const { db } = this.o;
    switch (result.type) {
      case 'succeeded': {
        const put = (name: string, contentType: string, bytes: Uint8Array) =>
          putArtifact(db, { runId, attempt, kind: 'student-model', name, contentType, bytes });
        await put('model.json', 'application/json', result.student.modelJson);
        await put('weights.bin', 'application/octet-stream', result.student.weights);
        await putArtifact(db, {
          runId,
          attempt,
          kind: 'report',
          name: 'summary.json',
          contentType: 'application/json',
          bytes: new TextEncoder().encode(JSON.stringify(result.summary, null, 2)),
        });
        await finishRun(db, runId, attempt, { status: 'succeeded', summary: result.summary });
        log.info({ accuracy: result.summary.student.accuracy }, 'run succeeded');
        return;
      }
      case 'canceled':
        if (this.stopping)
          return this.retryOrFail(
            runId,
            attempt,
            info,
            { code: 'RETORT_WORKER_LOST', message: 'the worker shut down' },
            log,
          );
        await finishRun(db, runId, attempt, {
          status: 'canceled',
          reason: `canceled by request at step ${result.position.step}`,
        });
        log.info({ step: result.position.step }, 'run canceled');
        return;
      case 'failed':
        if (result.retryable) return this.retryOrFail(runId, attempt, info, result.error, log);
        await finishRun(db, runId, attempt, { status: 'failed', error: result.error });
        log.info({ code: result.error.code, message: result.error.message }, 'run failed');
        return;
      case 'crashed':
        return this.retryOrFail(
          runId,
          attempt,
          info,
          this.stopping ? { code: 'RETORT_WORKER_LOST', message: 'the worker shut down' } : result.error,
          log,
        );
    }
  }

  /** Another attempt when some are left (BullMQ retries after backoff); else the run fails. */
  private async retryOrFail(
    runId: string,
    attempt: number,
    info: AttemptInfo,
    error: RunError,
    log: Logger,
  ): Promise<void> {
    if (info.attemptsMade + 1 < info.maxAttempts) {
      await requeueRun(this.o.db, runId, attempt, `attempt ${attempt} ended: ${error.message}; retrying`);
      log.warn({ error }, 'attempt ended without a result; the run goes back to the queue');
      throw new RetryableRunError(error.message);
    }
    await finishRun(this.o.db, runId, attempt, {
      status: 'failed',
      error: { code: error.code, message: `${error.message} (after ${info.maxAttempts} attempts)` },
    });
    log.warn({ error }, 'run failed after its last attempt');
  }
}
