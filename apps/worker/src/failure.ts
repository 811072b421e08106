import { isRetortError, type RunError } from '@retort/spec';

/** Running out of memory says nothing a retry could change: it fails the run with advice. */
export function isOutOfMemory(e: unknown): boolean {
  const msg = e instanceof Error ? `${e.name} ${e.message}` : String(e);
  return /out of memory|Array buffer allocation failed|Cannot enlarge memory|Invalid typed array length|WebAssembly\.Memory|memory access out of bounds/i.test(
    msg,
  );
}

export function describeFailure(e: unknown): { error: RunError; retryable: boolean } {
  if (isRetortError(e)) return { error: { code: e.code, message: e.message }, retryable: e.retryable };
  const message = e instanceof Error ? e.message : String(e);
  if (isOutOfMemory(e)) {
    return {
      error: {
        code: 'RETORT_OUT_OF_MEMORY',
        message: `training ran out of memory (${message}); lower training.batchSize or the model's size`,
      },
      retryable: false,
    };
  }
  // An error raised here comes back on every attempt with the same spec and data: only a process
  // that dies (killed, lost) is worth another attempt.
  return {
    error: { code: 'RETORT_TRAINING_FAILED', message: `training failed: ${message}` },
    retryable: false,
  };
}
