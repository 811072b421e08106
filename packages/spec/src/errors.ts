/**
 * Retort's error codes. They are part of the API contract: clients branch on `code`, never on
 * `message`. Each code has one HTTP status, says whether retrying the same thing can help, and has a
 * one-line description (docs/errors.md is generated from these: `npm run docs:errors`).
 */
export const ErrorCodes = {
  RETORT_SPEC_INVALID: {
    status: 400,
    retryable: false,
    description: 'The run spec breaks the schema or a rule; `details` lists every problem as a JSON Pointer.',
  },
  RETORT_REQUEST_INVALID: {
    status: 400,
    retryable: false,
    description:
      'A query string, header, path parameter or body (other than a run spec) is invalid, unknown fields included; `details` says where.',
  },
  RETORT_UNAUTHENTICATED: {
    status: 401,
    retryable: false,
    description: 'No API key, or one that is unknown or revoked.',
  },
  RETORT_FORBIDDEN: {
    status: 403,
    retryable: false,
    description: "The key lacks the route's scope, or the action is an operator's.",
  },
  RETORT_NOT_FOUND: {
    status: 404,
    retryable: false,
    description: 'No such route, team, key or webhook, or not yours.',
  },
  RETORT_RUN_NOT_FOUND: { status: 404, retryable: false, description: 'No such run, or not your team’s.' },
  RETORT_ARTIFACT_NOT_FOUND: {
    status: 404,
    retryable: false,
    description:
      'No such artifact or model file, or not your team’s (a model exists once its run succeeded).',
  },
  RETORT_INVALID_TRANSITION: {
    status: 409,
    retryable: false,
    description:
      'The run’s status does not allow this (cancel an ended run, resume one that is not paused, …).',
  },
  RETORT_CONFLICT: { status: 409, retryable: false, description: 'The name is taken (a team).' },
  RETORT_LIMIT_REACHED: {
    status: 409,
    retryable: false,
    description: 'The team has as many of these as the server allows (webhooks); remove one first.',
  },
  RETORT_PAYLOAD_TOO_LARGE: {
    status: 413,
    retryable: false,
    description: 'The body is over `RETORT_BODY_LIMIT`.',
  },
  RETORT_UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    retryable: false,
    description: 'The body is not `application/json`.',
  },
  RETORT_RATE_LIMITED: {
    status: 429,
    retryable: true,
    description:
      'Too many requests from this key, too many failed sign-ins from this address, or too many open streams; wait `Retry-After` seconds.',
  },
  RETORT_INTERNAL: {
    status: 500,
    retryable: true,
    description: 'A bug in Retort; the server log has the details.',
  },
  RETORT_DEPENDENCY_UNAVAILABLE: {
    status: 503,
    retryable: true,
    description: 'Postgres or Redis is unreachable or too slow; nothing was done, retry after `Retry-After`.',
  },
  RETORT_SHUTTING_DOWN: {
    status: 503,
    retryable: true,
    description:
      'The API process is stopping; a long wait or event stream ended early. Retry (another process answers).',
  },
  // Run failures: recorded on the run's `error`, not HTTP answers.
  RETORT_DATA_UNREADABLE: {
    status: 422,
    retryable: false,
    description:
      'A data URI cannot be read: outside the data roots (the team’s or the server’s), a host not allowed or not public, missing, too large, or a download failed.',
  },
  RETORT_DATA_INVALID: {
    status: 422,
    retryable: false,
    description: 'The data was read but is not what its format says (bad IDX header, CSV row, labels, …).',
  },
  RETORT_TEACHER_UNREADABLE: {
    status: 422,
    retryable: false,
    description:
      'The teacher model cannot be read or loaded (not a model, external ONNX data, weights beside it missing).',
  },
  RETORT_TEACHER_NOT_READY: {
    status: 422,
    retryable: false,
    description: 'A `{ "run": id }` teacher has not succeeded (or does not exist).',
  },
  RETORT_MODEL_INCOMPATIBLE: {
    status: 422,
    retryable: false,
    description:
      'Teacher, student and data do not fit together (shapes, classes, layers a loss names, size).',
  },
  RETORT_TRAINING_DIVERGED: {
    status: 422,
    retryable: false,
    description: 'The loss became NaN or infinite; lower the learning rate.',
  },
  RETORT_TRAINING_FAILED: {
    status: 422,
    retryable: false,
    description: 'Training stopped on an error of the compute backend.',
  },
  RETORT_OUT_OF_MEMORY: {
    status: 422,
    retryable: false,
    description:
      'The training process ran out of memory before its first step; lower the batch size or model size.',
  },
  RETORT_CHECKPOINT_INVALID: {
    status: 422,
    retryable: false,
    description: 'The checkpoint to resume from does not match the run (another spec or backend).',
  },
  RETORT_WORKER_LOST: {
    status: 500,
    retryable: true,
    description:
      'The run lost its worker or training process `training.maxAttempts` times; retry continues from its last checkpoint.',
  },
} as const satisfies Record<string, { status: number; retryable: boolean; description: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

/** One problem in a request or spec; `path` is a JSON Pointer into what the client sent. */
export interface ErrorDetail {
  path: string;
  message: string;
}

export class RetortError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly retryable: boolean;
  readonly details: ErrorDetail[] | undefined;

  constructor(code: ErrorCode, message: string, details?: ErrorDetail[]) {
    super(message);
    this.name = 'RetortError';
    this.code = code;
    this.statusCode = ErrorCodes[code].status;
    this.retryable = ErrorCodes[code].retryable;
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: ErrorDetail[] } {
    return this.details
      ? { code: this.code, message: this.message, details: this.details }
      : { code: this.code, message: this.message };
  }
}

export function isRetortError(e: unknown): e is RetortError {
  return (
    e instanceof RetortError ||
    (typeof e === 'object' &&
      e !== null &&
      (e as { name?: unknown }).name === 'RetortError' &&
      typeof (e as { code?: unknown }).code === 'string' &&
      (e as { code: string }).code in ErrorCodes)
  );
}

/** The `{ code, message }` stored on a failed run. */
export interface RunError {
  code: ErrorCode;
  message: string;
}

/**
 * docs/errors.md: every code with its status, whether a retry can help, and its description.
 * Generated (`npm run docs:errors`); a test fails when the page and the codes disagree.
 */
export function renderErrorCatalog(): string {
  const codes = Object.entries(ErrorCodes) as [ErrorCode, (typeof ErrorCodes)[ErrorCode]][];
  const line = ([code, e]: [ErrorCode, (typeof ErrorCodes)[ErrorCode]]) =>
    `- \`${code}\` (${e.status}, ${e.retryable ? 'retry can help' : 'retrying the same will not help'}): ${e.description}`;
  const http = codes.filter(([, e]) => e.status !== 422 && !RUN_ONLY.has(e));
  const run = codes.filter(([, e]) => e.status === 422 || RUN_ONLY.has(e));
  return [
    '# Error codes',
    '',
    'Every error Retort reports has a stable `code`; clients branch on it, never on `message`. HTTP',
    'answers carry it as `{ "code", "message", "details"? }` with the status below; a failed run carries',
    'it in its `error`. This page is generated from `packages/spec/src/errors.ts` (`npm run docs:errors`).',
    '',
    '## HTTP answers',
    '',
    ...http.map(line),
    '',
    "## A failed run's `error`",
    '',
    ...run.map(line),
    '',
  ].join('\n');
}

/** Codes that only a run's `error` carries, whatever their status number. */
const RUN_ONLY = new Set<(typeof ErrorCodes)[ErrorCode]>([ErrorCodes.RETORT_WORKER_LOST]);
