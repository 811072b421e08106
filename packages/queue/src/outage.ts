/** Whether `e` says Redis cannot serve us right now (down, reconnecting, or slower than our deadline). */
export function isRedisUnavailable(e: unknown): boolean {
  const code = String((e as { code?: unknown }).code ?? '');
  const msg = String((e as { message?: unknown }).message ?? '');
  return (
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND'].includes(code) ||
    /Command timed out|Connection is closed|Stream isn't writeable|max retries per request|ECONNREFUSED|LOADING/i.test(
      msg,
    )
  );
}
