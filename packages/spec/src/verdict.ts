import Type, { type Static } from 'typebox';
import type { RunSummary } from './resources.js';

/** Summary figures a spec may set thresholds on, by their path in the run's summary. */
export const ACCEPT_METRICS = {
  'student.accuracy': 'the student’s validation accuracy',
  'student.top5Accuracy': 'the student’s top-5 accuracy',
  'student.ece': 'the student’s expected calibration error',
  'student.latencyMs': 'the student’s per-example latency',
  'student.params': 'the student’s parameter count',
  'teacher.accuracy': 'the teacher’s validation accuracy',
  agreement: 'how often the student’s top class is the teacher’s',
  accuracyRetention: 'student accuracy / teacher accuracy',
  compression: 'teacher parameters / student parameters',
  speedup: 'teacher latency / student latency',
  klTeacherStudent: 'KL(teacher ‖ student) on the validation set',
  trainSeconds: 'time in the training loop',
  samplesPerSecond: 'training throughput',
} as const;
export type AcceptMetric = keyof typeof ACCEPT_METRICS;
/** Figures only a distill run has. */
export const TEACHER_METRICS: AcceptMetric[] = [
  'teacher.accuracy',
  'agreement',
  'accuracyRetention',
  'compression',
  'speedup',
  'klTeacherStudent',
];

const Bound = (m: string) =>
  Type.Object(
    {
      gte: Type.Optional(Type.Number()),
      gt: Type.Optional(Type.Number()),
      lte: Type.Optional(Type.Number()),
      lt: Type.Optional(Type.Number()),
    },
    { additionalProperties: false, minProperties: 1, description: `Bounds on ${m}.` },
  );

export const AcceptSchema = Type.Object(
  Object.fromEntries(Object.entries(ACCEPT_METRICS).map(([k, d]) => [k, Type.Optional(Bound(d))])) as Record<
    AcceptMetric,
    Type.TOptional<ReturnType<typeof Bound>>
  >,
  {
    additionalProperties: false,
    minProperties: 1,
    description:
      'Acceptance thresholds: a succeeded run passes when every bound holds, e.g. `{ "student.accuracy": { "gte": 0.85 } }`. The verdict is on the run.',
  },
);
export type AcceptSpec = Static<typeof AcceptSchema>;

export const VerdictSchema = Type.Union(
  [
    Type.Object({
      passed: Type.Boolean({ description: 'The run succeeded and every threshold holds.' }),
      reason: Type.String(),
      checks: Type.Array(
        Type.Object({
          metric: Type.String(),
          op: Type.Enum(['gte', 'gt', 'lte', 'lt']),
          threshold: Type.Number(),
          value: Type.Union([Type.Number(), Type.Null()]),
          passed: Type.Boolean(),
        }),
      ),
    }),
    Type.Null(),
  ],
  { description: 'Pass or fail once the run has ended (null while it is live); what a pipeline gates on.' },
);
export type Verdict = Static<typeof VerdictSchema>;

const OPS = {
  gte: (v: number, t: number) => v >= t,
  gt: (v: number, t: number) => v > t,
  lte: (v: number, t: number) => v <= t,
  lt: (v: number, t: number) => v < t,
};
const SYMBOL = { gte: '≥', gt: '>', lte: '≤', lt: '<' };

function valueAt(summary: RunSummary, metric: string): number | null {
  let v: unknown = summary;
  for (const part of metric.split('.'))
    v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** The verdict on an ended run: passed when it succeeded and every bound in `accept` holds. */
export function verdictOf(
  status: string,
  accept: AcceptSpec | undefined,
  summary: RunSummary | null,
): Verdict {
  if (status === 'queued' || status === 'running' || status === 'paused') return null;
  if (status !== 'succeeded' || !summary) return { passed: false, reason: `the run ${status}`, checks: [] };
  // In a fixed order (the spec may come back from Postgres with its keys reordered).
  const bounds = (accept ?? {}) as Record<string, Partial<Record<keyof typeof OPS, number>> | undefined>;
  const checks = Object.keys(ACCEPT_METRICS).flatMap((metric) =>
    (Object.keys(OPS) as (keyof typeof OPS)[]).flatMap((op) => {
      const threshold = bounds[metric]?.[op];
      if (threshold === undefined) return [];
      const value = valueAt(summary, metric);
      return [{ metric, op, threshold, value, passed: value !== null && OPS[op](value, threshold) }];
    }),
  );
  const failed = checks.filter((c) => !c.passed);
  return {
    passed: failed.length === 0,
    reason:
      failed.length === 0
        ? checks.length
          ? `every threshold holds (${checks.length})`
          : 'the run succeeded (no thresholds set)'
        : failed
            .map(
              (c) =>
                `${c.metric} ${c.value === null ? 'missing' : c.value} is not ${SYMBOL[c.op]} ${c.threshold}`,
            )
            .join('; '),
    checks,
  };
}
