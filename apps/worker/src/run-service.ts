import {
  claimRun,
  type Db,
  FencedOutError,
  findTeacherCache,
  finishRun,
  getRunById,
  getTeam,
  latestCheckpoint,
  pruneCheckpoints,
  putArtifact,
  type RunRow,
  readArtifactByName,
  requeueRun,
  setRunBackend,
  updateProgress,
} from '@retort/db';
import { RUN_JOB, type RunJobPayload, type RunProducer } from '@retort/queue';
import { RetortError, type RunError, type RunSpec, teachersOf } from '@retort/spec';
import type { BackendName, Progress, SavedModel } from '@retort/trainer';
import { policyForTeam, type UriPolicy } from '@retort/uri-policy';
import type { Logger } from 'pino';
import { MetricWriter } from './metric-writer.js';
import { duringOutage } from './outage.js';
import type { FromChild } from './protocol.js';
import type { TrainingProcess, TrainingResult, WarmProcesses } from './training-process.js';

export interface RunServiceOptions {
  db: Db;
  producer: RunProducer;
  log: Logger;
  worker: { id: string; backend: string; device: string };
  /** The server's policy; each run is held to its team's data roots within it, as read at its start. */
  policy: UriPolicy;
  /** The largest file a run may read (download or local). */
  maxReadBytes?: number | undefined;
  backend?: BackendName | undefined;
  /** The most memory a run's teacher-output cache may take (default 1 GiB). */
  teacherCacheMaxBytes?: number | undefined;
  /** Where training processes come from (a warm spare when there is one). */
  processes: WarmProcesses;
  metricsFlushMs: number;
  /** A run's progress (epoch, step) is written to Postgres at most this often (ms). Default 1000. */
  progressWriteMs?: number;
  /** On shutdown, how long the run in progress has to checkpoint before it is killed. */
  shutdownGraceMs: number;
  /** How many of a run's newest checkpoints to keep (besides its best one). Default 3. */
  keepCheckpoints?: number;
}

/**
 * Executes runs: claims one in Postgres, trains it in a child process from its last checkpoint,
 * streams metrics and checkpoints to Postgres, stores the student and records the outcome. All
 * writes carry the attempt number; once another attempt holds the run they are refused, and this
 * one stops. A crash sends the run back to the queue (Postgres counts the retries); a pause or a
 * shutdown checkpoints it first.
 */
export class RunService {
  private current: { runId: string; attempt: number; proc: TrainingProcess } | undefined;
  private stopping = false;

  constructor(private readonly o: RunServiceOptions) {}

  get currentRunId(): string | null {
    return this.current?.runId ?? null;
  }

  /** A control signal; ignored unless it names the run in progress. */
  signal(type: 'cancel' | 'pause', runId: string): void {
    if (this.current?.runId !== runId) return;
    this.o.log.info({ runId }, `${type} requested`);
    if (type === 'cancel') this.current.proc.cancel();
    else this.current.proc.stop();
  }

  /**
   * Shutdown: the run in progress checkpoints and goes back to the queue; if it has not within the
   * grace period, its process is killed and it resumes from its previous checkpoint.
   */
  stop(): void {
    this.stopping = true;
    const current = this.current;
    if (!current) return;
    current.proc.stop();
    setTimeout(() => current.proc.kill(), this.o.shutdownGraceMs).unref();
  }

  async execute(job: RunJobPayload): Promise<void> {
    const { db, log } = this.o;
    const { run, reason } = await claimRun(db, job.runId, job.dispatch, this.o.worker);
    if (!run) {
      log.info({ runId: job.runId, dispatch: job.dispatch, reason }, 'not taking this queue entry');
      return;
    }
    const attempt = run.attempt;
    const spec = run.spec as unknown as RunSpec;
    const rlog = log.child({ runId: run.id, attempt });
    rlog.info({ kind: spec.kind, name: spec.name, retries: run.retries }, 'run claimed');
    try {
      const teacherModels: Record<string, SavedModel> = {};
      for (const t of teachersOf(spec))
        if ('run' in t) teacherModels[t.run] ??= await this.teacherFromRun(run.teamId, t.run);
      // The team's data roots as they are now (an operator may have narrowed them since submit).
      const team = await getTeam(db, run.teamId);
      const policy = policyForTeam(this.o.policy, team?.dataRoots);
      const checkpoint = await latestCheckpoint(db, run.id);
      if (checkpoint) rlog.info({ step: checkpoint.step }, 'continuing from the last checkpoint');
      const result = await this.train(run, spec, policy, teacherModels, checkpoint?.bytes, rlog);
      await this.conclude(run, result, rlog);
    } catch (e) {
      if (e instanceof FencedOutError) {
        rlog.warn({ err: e.message }, 'lost the claim on this run; its writes are refused, stopping');
        this.current?.proc.kill();
        return;
      }
      if (e instanceof RetortError && !e.retryable) {
        await finishRun(db, run.id, attempt, {
          status: 'failed',
          error: { code: e.code, message: e.message },
        });
        rlog.info({ code: e.code }, 'run failed');
        return;
      }
      await this.backToQueue(run, { code: 'RETORT_INTERNAL', message: String(e) }, true, rlog);
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
    run: RunRow,
    spec: RunSpec,
    policy: UriPolicy,
    teacherModels: Record<string, SavedModel>,
    resume: Uint8Array | undefined,
    log: Logger,
  ) {
    const { db } = this.o;
    const { id: runId, attempt } = run;
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
      const flags = await updateProgress(db, runId, attempt, {
        epoch,
        step: p.step,
        totalSteps: p.totalSteps,
      });
      // The control channel is the fast path; these flags catch a signal whose message was missed.
      if (flags.cancelRequested) proc.cancel();
      else if (flags.pauseRequested) proc.stop();
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
          if (Date.now() - lastProgressWrite >= (this.o.progressWriteMs ?? 1000)) {
            lastProgressWrite = Date.now();
            // One write at a time, in order: a slow write must not land after a newer one.
            progressWrites = progressWrites.then(() => writeProgress(m.progress)).catch(onWriteError);
          }
          break;
        case 'cache-get':
          findTeacherCache(db, run.teamId, m.key).then(
            (bytes) => proc.send({ type: 'cache-found', id: m.id, bytes }),
            (e) => {
              log.warn({ err: String(e) }, 'could not read the teacher cache');
              proc.send({ type: 'cache-found', id: m.id, bytes: null });
            },
          );
          break;
        case 'cache-put':
          putArtifact(db, {
            runId,
            attempt,
            kind: 'teacher-cache',
            name: `teacher-cache-${m.key.slice(0, 16)}`,
            bytes: m.bytes,
            metadata: { cacheKey: m.key },
          }).then(
            () => log.info({ key: m.key.slice(0, 16) }, 'teacher outputs stored for later runs'),
            onWriteError,
          );
          break;
        case 'checkpoint': {
          // Every metric point up to the checkpoint's step is written before the checkpoint is, so
          // a resumed run's series has no gap.
          const store = async () => {
            await metrics.drain();
            if (metrics.fenced) throw metrics.fenced;
            await this.storeCheckpoint(runId, attempt, m.position, m.valAccuracy, m.bytes);
          };
          duringOutage(store, log).then(
            () => proc.send({ type: 'checkpoint-stored', id: m.id }),
            (e) => {
              onWriteError(e);
              proc.send({ type: 'checkpoint-stored', id: m.id, error: String(e) });
            },
          );
          break;
        }
      }
    };
    const proc = await this.o.processes.take(onMessage);
    this.current = { runId, attempt, proc };
    if (this.stopping) proc.stop();
    proc.send({
      type: 'start',
      spec,
      policy,
      maxReadBytes: this.o.maxReadBytes,
      backend: this.o.backend,
      teacherModels,
      resume,
      teacherCacheMaxBytes: this.o.teacherCacheMaxBytes,
    });
    const result = await proc.result;
    metrics.close();
    if (fenced) throw fenced;
    await duringOutage(() => metrics.drain(), log);
    if (metrics.fenced) throw metrics.fenced;
    await progressWrites;
    // Progress messages are throttled; a run that stopped early brings its position with its result.
    if ((result.type === 'canceled' || result.type === 'stopped') && latest)
      latest = { ...latest, ...result.position };
    if (latest) {
      const last = latest;
      await duringOutage(() => writeProgress(last), log);
    }
    return result;
  }

  private async storeCheckpoint(
    runId: string,
    attempt: number,
    position: { step: number; epoch: number; batchInEpoch: number },
    valAccuracy: number | undefined,
    bytes: Uint8Array,
  ) {
    await putArtifact(this.o.db, {
      runId,
      attempt,
      kind: 'checkpoint',
      name: `step-${String(position.step).padStart(9, '0')}`,
      bytes,
      metadata: { ...position, ...(valAccuracy === undefined ? {} : { valAccuracy }) },
    });
    await pruneCheckpoints(this.o.db, runId, this.o.keepCheckpoints ?? 3);
  }

  private async conclude(run: RunRow, result: TrainingResult, log: Logger): Promise<void> {
    const { db } = this.o;
    const { id: runId, attempt } = run;
    switch (result.type) {
      case 'succeeded': {
        const put = (
          kind: 'student-model' | 'report',
          name: string,
          contentType: string,
          bytes: Uint8Array,
        ) => duringOutage(() => putArtifact(db, { runId, attempt, kind, name, contentType, bytes }), log);
        await put('student-model', 'model.json', 'application/json', result.student.modelJson);
        await put('student-model', 'weights.bin', 'application/octet-stream', result.student.weights);
        await put(
          'report',
          'summary.json',
          'application/json',
          new TextEncoder().encode(JSON.stringify(result.summary, null, 2)),
        );
        await duringOutage(
          () => finishRun(db, runId, attempt, { status: 'succeeded', summary: result.summary }),
          log,
        );
        log.info({ accuracy: result.summary.student.accuracy }, 'run succeeded');
        return;
      }
      case 'canceled':
        await duringOutage(
          () =>
            finishRun(db, runId, attempt, {
              status: 'canceled',
              reason: `canceled by request at step ${result.position.step}`,
            }),
          log,
        );
        log.info({ step: result.position.step }, 'run canceled');
        return;
      case 'stopped':
        if (this.stopping)
          return this.backToQueue(
            run,
            {
              code: 'RETORT_WORKER_LOST',
              message: `the worker shut down; checkpointed at step ${result.position.step}`,
            },
            false,
            log,
          );
        await duringOutage(
          () =>
            finishRun(db, runId, attempt, {
              status: 'paused',
              reason: `paused by request; checkpointed at step ${result.position.step}`,
            }),
          log,
        );
        log.info({ step: result.position.step }, 'run paused');
        return;
      case 'failed':
        if (result.retryable) return this.backToQueue(run, result.error, true, log);
        await duringOutage(
          () => finishRun(db, runId, attempt, { status: 'failed', error: result.error }),
          log,
        );
        log.info({ code: result.error.code, message: result.error.message }, 'run failed');
        return;
      case 'crashed':
        if (this.stopping)
          return this.backToQueue(
            run,
            { code: 'RETORT_WORKER_LOST', message: 'the worker shut down' },
            false,
            log,
          );
        if (result.outOfMemory && result.beforeFirstStep) {
          const error: RunError = {
            code: 'RETORT_OUT_OF_MEMORY',
            message: `${result.error.message} before its first step; lower training.batchSize or the model's size`,
          };
          await duringOutage(() => finishRun(db, runId, attempt, { status: 'failed', error }), log);
          log.info({ code: error.code }, 'run failed');
          return;
        }
        return this.backToQueue(run, result.error, true, log);
    }
  }

  /**
   * Sends the run back to the queue as a new dispatch. `lost` (a crash) counts a retry and waits
   * out a backoff; at training.maxAttempts the run fails instead.
   */
  private async backToQueue(run: RunRow, error: RunError, lost: boolean, log: Logger): Promise<void> {
    const requeued = await duringOutage(
      () =>
        requeueRun(this.o.db, run.id, run.attempt, `attempt ${run.attempt} ended: ${error.message}`, {
          lost,
          error,
        }),
      log,
    );
    if (requeued.status !== 'queued') {
      log.warn({ error }, 'run failed: no attempts left');
      return;
    }
    const delayMs = lost ? RUN_JOB.retryDelayMs(requeued.retries) : 0;
    // If Redis is down too, the reconciler re-enqueues it from Postgres.
    await this.o.producer
      .enqueue({
        runId: run.id,
        dispatch: requeued.dispatch,
        pool: requeued.pool,
        priority: requeued.priority,
        delayMs,
      })
      .catch((e) => log.warn({ err: String(e) }, 'could not enqueue; the reconciler will'));
    log.warn(
      { error, retries: requeued.retries, delayMs },
      'attempt ended without a result; the run is back on the queue',
    );
  }
}
