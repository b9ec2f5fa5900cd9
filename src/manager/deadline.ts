import { TimeoutError, abortReason } from '../errors.js';

/** Runs `operation` with a signal that aborts on the caller's signal or after `timeout` ms. */
export async function withDeadline<T>(outer: AbortSignal | undefined, timeout: number, what: string, operation: (signal: AbortSignal) => Promise<T>): Promise<T> {
  if (outer?.aborted) throw abortReason(outer);
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(abortReason(outer!));
  outer?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => controller.abort(new TimeoutError(`${what} timed out after ${timeout} ms`)), timeout);
  try {
    return await new Promise<T>((resolve, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
      operation(controller.signal).then(resolve, reject);
    });
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', onAbort);
  }
}
