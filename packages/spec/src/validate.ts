import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { type ErrorDetail, RetortError } from './errors.js';
import {
  DEFAULTS,
  type LossSpec,
  type OptimizerSpec,
  type RunSpec,
  type ScheduleSpec,
  type StudentSpec,
} from './run-spec.js';
import { type RunSpecInput, RunSpecSchema, type UnionBranchHint } from './schema/index.js';
import { TEACHER_METRICS } from './verdict.js';

// ajv-formats is CommonJS; under NodeNext its default export arrives wrapped.
type AddFormats = typeof addFormatsModule.default;
const addFormats: AddFormats =
  (addFormatsModule as unknown as { default?: AddFormats }).default ??
  (addFormatsModule as unknown as AddFormats);

const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, strictRequired: false });
ajv.addKeyword({ keyword: 'x-retort-union', schemaType: 'array' });
addFormats(ajv, ['uuid']);
const checkStructure = ajv.compile<RunSpecInput>(RunSpecSchema);

export type SpecValidation = { ok: true; spec: RunSpec } | { ok: false; errors: ErrorDetail[] };

/**
 * Validates a submitted spec and fills in its defaults. Every problem is reported, each with a JSON
 * Pointer into the submitted document; structural and cross-field problems come in one list.
 */
export function validateSpec(input: unknown): SpecValidation {
  if (!checkStructure(input)) {
    const errors = describeAjvErrors(checkStructure.errors ?? []);
    // Cross-field rules still apply to the parts that are well-formed, so one answer lists everything.
    if (isObject(input)) errors.push(...crossFieldProblems(input as Partial<RunSpecInput>));
    return { ok: false, errors: dedupe(errors) };
  }
  const problems = crossFieldProblems(input);
  if (problems.length > 0) return { ok: false, errors: problems };
  return { ok: true, spec: withDefaults(input) };
}

/** Like validateSpec, but throws RETORT_SPEC_INVALID listing every problem. */
export function parseSpec(input: unknown): RunSpec {
  const result = validateSpec(input);
  if (!result.ok) {
    const n = result.errors.length;
    throw new RetortError(
      'RETORT_SPEC_INVALID',
      `The run spec has ${n} problem${n === 1 ? '' : 's'}.`,
      result.errors,
    );
  }
  return result.spec;
}

function crossFieldProblems(spec: Partial<RunSpecInput>): ErrorDetail[] {
  const out: ErrorDetail[] = [];
  const kind = spec.kind ?? 'distill';
  if (kind === 'distill' && spec.teacher === undefined && spec.teachers === undefined) {
    out.push({ path: '/teacher', message: 'is required when kind is "distill" (or give `teachers`)' });
  }
  if (spec.teacher !== undefined && spec.teachers !== undefined) {
    out.push({ path: '/teachers', message: 'give either `teacher` or `teachers`, not both' });
  }
  if (kind === 'train') {
    for (const key of ['teacher', 'teachers'] as const) {
      if (spec[key] !== undefined)
        out.push({
          path: `/${key}`,
          message: 'must be absent when kind is "train" (it trains from labels alone)',
        });
    }
  }
  const student = spec.student as Record<string, unknown> | undefined;
  if (isObject(student) && 'preset' in student) {
    // Weights between consecutive hidden layers (the input layer's depend on the data, checked by the worker).
    const widths = (student.preset === 'cnn' ? student.filters : student.hidden) as unknown;
    if (Array.isArray(widths) && widths.every((w) => typeof w === 'number')) {
      const k =
        student.preset === 'cnn' && typeof student.kernelSize === 'number' ? student.kernelSize ** 2 : 1;
      let weights = 0;
      for (let i = 1; i < widths.length; i++)
        weights += (widths[i - 1] as number) * (widths[i] as number) * k;
      if (weights > MAX_HIDDEN_WEIGHTS)
        out.push({
          path: `/student/${student.preset === 'cnn' ? 'filters' : 'hidden'}`,
          message: `makes ${weights.toLocaleString('en')} weights between hidden layers; at most ${MAX_HIDDEN_WEIGHTS.toLocaleString('en')}`,
        });
    }
  }
  const lossTypes = Array.isArray(spec.distillation?.losses)
    ? spec.distillation.losses.map((l) => (isObject(l) ? l.type : undefined))
    : [];
  const unlabeled = isObject(spec.data) && spec.data.unlabeled !== undefined;
  if (lossTypes.includes('pseudo-label') && !unlabeled) {
    out.push({ path: '/data/unlabeled', message: 'is required by the pseudo-label loss' });
  }
  if (unlabeled && !lossTypes.includes('pseudo-label')) {
    out.push({
      path: '/data/unlabeled',
      message: 'is read only by a pseudo-label loss; add one or remove it',
    });
  }
  const losses = spec.distillation?.losses;
  if (Array.isArray(losses)) {
    const seen = new Set<string>();
    losses.forEach((loss, i) => {
      if (!isObject(loss) || typeof loss.type !== 'string') return;
      if (seen.has(loss.type))
        out.push({ path: `/distillation/losses/${i}/type`, message: `"${loss.type}" is listed twice` });
      seen.add(loss.type);
      if (kind === 'train' && TEACHER_LOSSES.includes(loss.type)) {
        out.push({
          path: `/distillation/losses/${i}/type`,
          message: `"${loss.type}" needs a teacher; kind "train" learns from labels alone`,
        });
      }
    });
    if (losses.length > 0 && losses.every((l) => isObject(l) && l.weight === 0)) {
      out.push({ path: '/distillation/losses', message: 'at least one loss must have a weight above 0' });
    }
  }
  if (kind === 'train' && isObject(spec.accept)) {
    for (const m of TEACHER_METRICS)
      if (m in spec.accept)
        out.push({
          path: `/accept/${m}`,
          message: 'is a figure of distill runs; kind "train" has no teacher',
        });
  }
  const opt = spec.training?.optimizer;
  if (isObject(opt) && opt.type === 'sgd' && opt.nesterov === true && !((opt.momentum ?? 0) > 0)) {
    out.push({ path: '/training/optimizer/nesterov', message: 'needs momentum above 0' });
  }
  return out;
}

/** The most weights a preset student may have between its hidden layers (about 64 MiB as float32). */
export const MAX_HIDDEN_WEIGHTS = 16_777_216;

/** Losses that compare the student with a teacher. */
const TEACHER_LOSSES = ['kd', 'dkd', 'hint', 'attention', 'rkd', 'jacobian', 'pseudo-label'];

function withDefaults(input: RunSpecInput): RunSpec {
  const kind = input.kind ?? 'distill';
  const t = input.training ?? {};
  const spec: RunSpec = {
    name: input.name ?? kind,
    kind,
    student: studentWithDefaults(input.student),
    data: {
      train: input.data.train,
      validation: input.data.validation ?? { split: DEFAULTS.validationSplit },
      preprocess: { scale: input.data.preprocess?.scale ?? DEFAULTS.scale },
    },
    distillation: {
      losses: (
        input.distillation?.losses ?? (kind === 'distill' ? DEFAULTS.distillLosses : DEFAULTS.trainLosses)
      ).map(lossWithDefaults),
      teacherCache: input.distillation?.teacherCache ?? 'auto',
    },
    training: {
      epochs: t.epochs ?? DEFAULTS.epochs,
      batchSize: t.batchSize ?? DEFAULTS.batchSize,
      optimizer: optimizerWithDefaults(t.optimizer),
      schedule: scheduleWithDefaults(t.schedule),
      warmupSteps: t.warmupSteps ?? 0,
      seed: t.seed ?? DEFAULTS.seed,
      checkpointEvery: t.checkpointEvery ?? { epochs: 1 },
      maxAttempts: t.maxAttempts ?? DEFAULTS.maxAttempts,
    },
    resources: { pool: input.resources?.pool ?? DEFAULTS.pool, gpus: input.resources?.gpus ?? DEFAULTS.gpus },
    priority: input.priority ?? DEFAULTS.priority,
    tags: input.tags ?? {},
  };
  if (input.teacher) spec.teacher = input.teacher;
  if (input.accept) spec.accept = input.accept;
  if (input.teachers) spec.teachers = input.teachers.map((t) => ({ ...t, weight: t.weight ?? 1 }));
  if (input.data.unlabeled) spec.data.unlabeled = input.data.unlabeled;
  const pre = input.data.preprocess;
  if (pre?.shape) spec.data.preprocess.shape = pre.shape;
  if (pre?.mean) spec.data.preprocess.mean = pre.mean;
  if (pre?.std) spec.data.preprocess.std = pre.std;
  const aug = input.data.augment;
  if (aug && ((aug.shift ?? 0) > 0 || aug.flip))
    spec.data.augment = { shift: aug.shift ?? 0, flip: aug.flip ?? false };
  if (t.maxSteps !== undefined) spec.training.maxSteps = t.maxSteps;
  if (t.earlyStopping) {
    spec.training.earlyStopping = {
      metric: t.earlyStopping.metric ?? 'val_accuracy',
      patience: t.earlyStopping.patience ?? DEFAULTS.patience,
      minDelta: t.earlyStopping.minDelta ?? 0,
    };
  }
  return spec;
}

function studentWithDefaults(s: RunSpecInput['student']): StudentSpec {
  if (!('preset' in s)) return s;
  if (s.preset === 'mlp') {
    return {
      preset: 'mlp',
      hidden: s.hidden ?? [...DEFAULTS.mlpHidden],
      activation: s.activation ?? 'relu',
      dropout: s.dropout ?? 0,
    };
  }
  return {
    preset: 'cnn',
    filters: s.filters ?? [...DEFAULTS.cnnFilters],
    kernelSize: s.kernelSize ?? DEFAULTS.cnnKernelSize,
    dense: s.dense ?? [...DEFAULTS.cnnDense],
    dropout: s.dropout ?? 0,
  };
}

type LossInput = NonNullable<RunSpecInput['distillation']>['losses'][number];
type TrainingInput = NonNullable<RunSpecInput['training']>;

function lossWithDefaults(l: LossInput): LossSpec {
  switch (l.type) {
    case 'kd': {
      const t = l.temperature ?? DEFAULTS.kdTemperature;
      return {
        type: 'kd',
        weight: l.weight ?? 1,
        temperature: typeof t === 'number' ? t : { ...t, schedule: t.schedule ?? 'linear' },
      };
    }
    case 'dkd':
      return {
        type: 'dkd',
        weight: l.weight ?? 1,
        alpha: l.alpha ?? DEFAULTS.dkdAlpha,
        beta: l.beta ?? DEFAULTS.dkdBeta,
        temperature: l.temperature ?? DEFAULTS.kdTemperature,
      };
    case 'ce':
      return { type: 'ce', weight: l.weight ?? 1 };
    case 'hint':
      return { type: 'hint', weight: l.weight ?? 1, student: l.student, teacher: l.teacher };
    case 'attention':
      return {
        type: 'attention',
        weight: l.weight ?? 1,
        student: l.student,
        teacher: l.teacher,
        p: l.p ?? 2,
      };
    case 'rkd': {
      const r: LossSpec = {
        type: 'rkd',
        weight: l.weight ?? 1,
        distance: l.distance ?? 1,
        angle: l.angle ?? 2,
      };
      if (l.student) r.student = l.student;
      if (l.teacher) r.teacher = l.teacher;
      return r;
    }
    case 'jacobian':
      return {
        type: 'jacobian',
        weight: l.weight ?? 1,
        temperature: l.temperature ?? DEFAULTS.kdTemperature,
      };
    case 'pseudo-label':
      return {
        type: 'pseudo-label',
        weight: l.weight ?? 1,
        mode: l.mode ?? 'hard',
        threshold: l.threshold ?? 0.9,
        temperature: l.temperature ?? 1,
      };
  }
}

function optimizerWithDefaults(o: TrainingInput['optimizer']): OptimizerSpec {
  if (o?.type === 'sgd') {
    return {
      type: 'sgd',
      learningRate: o.learningRate ?? DEFAULTS.sgdLearningRate,
      momentum: o.momentum ?? 0,
      nesterov: o.nesterov ?? false,
    };
  }
  if (o?.type === 'adamw') {
    return {
      type: 'adamw',
      learningRate: o.learningRate ?? DEFAULTS.adamLearningRate,
      weightDecay: o.weightDecay ?? DEFAULTS.adamwWeightDecay,
    };
  }
  return { type: 'adam', learningRate: o?.learningRate ?? DEFAULTS.adamLearningRate };
}

function scheduleWithDefaults(s: TrainingInput['schedule']): ScheduleSpec {
  if (s?.type === 'step')
    return { type: 'step', everyEpochs: s.everyEpochs, gamma: s.gamma ?? DEFAULTS.stepGamma };
  if (s?.type === 'cosine') return { type: 'cosine', minLearningRate: s.minLearningRate ?? 0 };
  return { type: 'constant' };
}

// ---------------------------------------------------------------- error reporting

interface UnionSite {
  schemaPath: string;
  instancePath: string;
  chosen: number | undefined;
}

/**
 * Turns Ajv's errors into one line per problem. At a tagged union, only the errors of the branch
 * the client meant (told by its key) are kept; when no branch can be told, one line says what the
 * alternatives are.
 */
export function describeAjvErrors(errors: ErrorObject[]): ErrorDetail[] {
  const sites: UnionSite[] = [];
  for (const e of errors) {
    if (e.keyword !== 'anyOf') continue;
    const hints = (e.parentSchema as { 'x-retort-union'?: UnionBranchHint[] } | undefined)?.[
      'x-retort-union'
    ];
    sites.push({
      schemaPath: e.schemaPath,
      instancePath: e.instancePath,
      chosen: hints ? chooseBranch(e.data, hints) : undefined,
    });
  }
  const out: ErrorDetail[] = [];
  for (const e of errors) {
    const site = sites.find(
      (s) => e.schemaPath.startsWith(`${s.schemaPath}/`) && isWithin(e.instancePath, s.instancePath),
    );
    if (site) {
      const branch = Number(e.schemaPath.slice(site.schemaPath.length + 1).split('/')[0]);
      if (site.chosen === undefined || branch !== site.chosen) continue;
    }
    if (e.keyword === 'anyOf') {
      const own = sites.find((s) => s.schemaPath === e.schemaPath && s.instancePath === e.instancePath);
      if (own?.chosen !== undefined) continue;
      out.push({ path: e.instancePath || '/', message: describeAlternatives(e) });
      continue;
    }
    out.push(describeOne(e));
  }
  return out;
}

function chooseBranch(data: unknown, hints: UnionBranchHint[]): number | undefined {
  if (!isObject(data)) return undefined;
  const byValue = hints.findIndex((h) => h.value !== undefined && data[h.key] === h.value);
  if (byValue >= 0) return byValue;
  const byKey = hints.findIndex((h) => h.value === undefined && h.key in data);
  return byKey >= 0 ? byKey : undefined;
}

function describeAlternatives(e: ErrorObject): string {
  const hints = (e.parentSchema as { 'x-retort-union'?: UnionBranchHint[] } | undefined)?.['x-retort-union'];
  if (!hints) return 'does not match any allowed form';
  const forms = hints.map((h) => (h.value === undefined ? `"${h.key}"` : `"${h.key}": "${h.value}"`));
  if (isObject(e.data)) {
    const keyed = [...new Set(hints.map((h) => h.key))].filter((k) => k in (e.data as object));
    if (keyed.length > 0) {
      const k = keyed[0] as string;
      const allowed = hints.filter((h) => h.key === k && h.value !== undefined).map((h) => `"${h.value}"`);
      return `has ${k} ${JSON.stringify((e.data as Record<string, unknown>)[k])}; expected one of ${allowed.join(', ')}`;
    }
  }
  return `must be an object with one of: ${forms.join(' | ')}`;
}

function describeOne(e: ErrorObject): ErrorDetail {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return {
        path: `${e.instancePath}/${escapePointer(String(p.missingProperty))}`,
        message: 'is required',
      };
    case 'additionalProperties': {
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return {
        path: `${e.instancePath}/${escapePointer(String(p.additionalProperty))}`,
        message: `is not a known field${known.length ? ` (known: ${known.join(', ')})` : ''}`,
      };
    }
    case 'enum':
      return {
        path: e.instancePath || '/',
        message: `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      };
    case 'const':
      return { path: e.instancePath || '/', message: `must be ${JSON.stringify(p.allowedValue)}` };
    case 'type':
      return { path: e.instancePath || '/', message: `must be ${article(String(p.type))} ${p.type}` };
    case 'pattern':
      return { path: e.instancePath || '/', message: patternMessage(e) };
    case 'propertyNames':
      return {
        path: `${e.instancePath}/${escapePointer(String(p.propertyName))}`,
        message: 'is not an allowed key (1 to 64 characters, no ":")',
      };
    case 'format':
      return { path: e.instancePath || '/', message: `must be a valid ${p.format}` };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { path: e.instancePath || '/', message: `must be ${p.comparison} ${p.limit}` };
    default:
      return { path: e.instancePath || '/', message: e.message ?? 'is invalid' };
  }
}

function patternMessage(e: ErrorObject): string {
  const desc = (e.parentSchema as { description?: string } | undefined)?.description;
  if ((e.params as { pattern: string }).pattern.startsWith('^(file|https?)'))
    return 'must be a file://, http:// or https:// URI';
  return desc
    ? `does not match the expected form: ${desc}`
    : `must match ${(e.params as { pattern: string }).pattern}`;
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

function isWithin(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

export function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function dedupe(errors: ErrorDetail[]): ErrorDetail[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.path}\u0000${e.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
