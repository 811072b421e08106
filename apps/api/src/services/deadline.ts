/**
 * `work`, or a rejection after `ms`: for calls to Redis whose client may wait for a connection
 * (BullMQ waits for "ready" without a bound). The work itself goes on; callers use this only where
 * finishing late is harmless (an enqueue the reconciler would make anyway).
 */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
