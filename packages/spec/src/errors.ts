/**
 * Retort's error codes. They are part of the API contract: clients branch on `code`, never on
 * `message`. Each code has one HTTP status and says whether retrying the same thing can help.
 */
export const ErrorCodes = {
  RETORT_SPEC_INVALID: { status: 400, retryable: false },
  RETORT_REQUEST_INVALID: { status: 400, retryable: false },
  RETORT_UNAUTHENTICATED: { status: 401, retryable: false },
  RETORT_FORBIDDEN: { status: 403, retryable: false },
  RETORT_NOT_FOUND: { status: 404, retryable: false },
  RETORT_RUN_NOT_FOUND: { status: 404, retryable: false },
  RETORT_ARTIFACT_NOT_FOUND: { status: 404, retryable: false },
  RETORT_INVALID_TRANSITION: { status: 409, retryable: false },
  RETORT_IDEMPOTENCY_CONFLICT: { status: 409, retryable: false },
  RETORT_CONFLICT: { status: 409, retryable: false },
  RETORT_PAYLOAD_TOO_LARGE: { status: 413, retryable: false },
  RETORT_UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false },
  RETORT_RATE_LIMITED: { status: 429, retryable: true },
  RETORT_INTERNAL: { status: 500, retryable: true },
  RETORT_DEPENDENCY_UNAVAILABLE: { status: 503, retryable: true },
  // Run failures: recorded on the run's `error`, not HTTP answers.
  RETORT_DATA_UNREADABLE: { status: 422, retryable: false },
  RETORT_DATA_INVALID: { status: 422, retryable: false },
  RETORT_TEACHER_UNREADABLE: { status: 422, retryable: false },
  RETORT_TEACHER_NOT_READY: { status: 422, retryable: false },
  RETORT_MODEL_INCOMPATIBLE: { status: 422, retryable: false },
  RETORT_TRAINING_DIVERGED: { status: 422, retryable: false },
  RETORT_TRAINING_FAILED: { status: 422, retryable: false },
  RETORT_OUT_OF_MEMORY: { status: 422, retryable: false },
  RETORT_CHECKPOINT_INVALID: { status: 422, retryable: false },
  RETORT_WORKER_LOST: { status: 500, retryable: true },
} as const;

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
