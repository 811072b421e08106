import type { ModelSummary, RunSummary } from '@retort/spec';
import * as tf from '@tensorflow/tfjs';
import { type Datasets, gatherScaled } from './data/dataset.js';
import {
  accuracy,
  agreement,
  expectedCalibrationError,
  meanKl,
  medianLatencyMs,
  perClassAccuracy,
  topKAccuracy,
} from './evaluation.js';
import { predictLogits, teacherLogits } from './inference.js';
import type { Teacher } from './models/teacher.js';

export interface SummarizeInput {
  student: tf.LayersModel;
  teacher: Teacher | undefined;
  data: Datasets;
  numClasses: number;
  /** Teacher logits on the validation set, when already computed. */
  teacherValLogits: Float32Array | undefined;
  backend: string;
  training: Pick<RunSummary, 'steps' | 'epochs' | 'trainSeconds' | 'samplesPerSecond' | 'trainExamples'>;
}

/** Examples per batch when timing inference: enough to amortise per-call overhead, as serving does. */
export const LATENCY_BATCH = 256;

/** The first validation examples, scaled, as the models take them. */
function firstExamples(data: Datasets, n: number): { x: Float32Array; n: number } {
  const m = Math.min(n, data.validation.n);
  const x = new Float32Array(m * data.validation.features);
  gatherScaled(
    data.validation,
    Int32Array.from({ length: m }, (_, i) => i),
    data.preprocess,
    x,
  );
  return { x, n: m };
}

/**
 * The figures API.md promises for a finished run, on the validation set: accuracy and calibration
 * of student and teacher, their agreement, KL(teacher || student), accuracy retention, parameter
 * counts and per-example latency, and the ratios between them.
 */
export async function summarize(input: SummarizeInput): Promise<RunSummary> {
  const { student, teacher, data, numClasses } = input;
  const labels = data.validation.y;
  const nVal = data.validation.n;
  const studentLogits = await predictLogits(student, data.validation, data, numClasses);
  const batch = firstExamples(data, LATENCY_BATCH);
  const studentLatency =
    (await medianLatencyMs(
      () => {
        const y = tf.tidy(
          () => student.predict(tf.tensor(batch.x, [batch.n, ...data.inputShape])) as tf.Tensor,
        );
        y.dataSync();
        y.dispose();
      },
      20,
      3,
    )) / batch.n;
  const studentSummary: ModelSummary = {
    accuracy: accuracy(studentLogits, labels, numClasses),
    top5Accuracy: topKAccuracy(studentLogits, labels, numClasses, 5),
    perClass: perClassAccuracy(studentLogits, labels, numClasses),
    params: student.countParams(),
    latencyMs: studentLatency,
    ece: expectedCalibrationError(studentLogits, labels, numClasses),
    runtime: `tfjs-${tf.getBackend()}`,
  };
  const summary: RunSummary = {
    student: studentSummary,
    validationExamples: nVal,
    backend: input.backend,
    ...input.training,
  };
  if (teacher) {
    const tLogits = input.teacherValLogits ?? (await teacherLogits(teacher, data.validation, data));
    const teacherLatency = (await medianLatencyMs(() => teacher.logits(batch.x, batch.n), 20, 3)) / batch.n;
    const teacherSummary: ModelSummary = {
      accuracy: accuracy(tLogits, labels, numClasses),
      top5Accuracy: topKAccuracy(tLogits, labels, numClasses, 5),
      perClass: perClassAccuracy(tLogits, labels, numClasses),
      params: teacher.params,
      latencyMs: teacherLatency,
      ece: expectedCalibrationError(tLogits, labels, numClasses),
      runtime: teacher.runtime,
    };
    summary.teacher = teacherSummary;
    summary.agreement = agreement(studentLogits, tLogits, nVal, numClasses);
    summary.klTeacherStudent = meanKl(tLogits, studentLogits, nVal, numClasses);
    summary.accuracyRetention =
      teacherSummary.accuracy > 0 ? studentSummary.accuracy / teacherSummary.accuracy : 0;
    summary.compression = studentSummary.params > 0 ? teacherSummary.params / studentSummary.params : 0;
    summary.speedup = studentLatency > 0 ? teacherLatency / studentLatency : 0;
  }
  return summary;
}
