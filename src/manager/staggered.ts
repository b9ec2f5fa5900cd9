import { RidproxyError, UnreachableError, abortReason } from '../errors.js';

/** How long a route gets before the next one is tried alongside it, as Happy Eyeballs (RFC 8305) staggers addresses. */
export const ROUTE_STAGGER_MS = 250;

/**
 * Runs `attempts` in order, each `stagger` ms after the one before, or at once when the one
 * before failed, and resolves with the first to succeed; the others are aborted, and any that
 * succeeds anyway is handed to `discard`. When every attempt fails it rejects with their error
 * if they all failed alike (same code), else with ERR_UNREACHABLE listing each one.
 */
export function firstToSucceed<T>(
  attempts: ReadonlyArray<{ label: string; run: (signal: AbortSignal) => Promise<T> }>,
  signal: AbortSignal,
  discard: (value: T) => void,
  stagger = ROUTE_STAGGER_MS,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      reject(abortReason(signal));
      return;
    }
    const controllers: AbortController[] = [];
    const errors: Array<{ label: string; err: Error }> = [];
    let settled = false;
    let started = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      settled = true;
      if (timer) clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      for (const controller of controllers) controller.abort(new RidproxyError('ERR_ABORTED', 'another route answered first'));
    };
    const onAbort = (): void => {
      if (settled) return;
      finish();
      reject(abortReason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const startNext = (): void => {
      if (settled || started >= attempts.length) return;
      if (timer) clearTimeout(timer);
      const { label, run } = attempts[started++];
      const controller = new AbortController();
      controllers.push(controller);
      run(controller.signal).then(
        (value) => {
          if (settled) {
            discard(value);
            return;
          }
          finish();
          resolve(value);
        },
        (err: Error) => {
          if (settled) return;
          errors.push({ label, err });
          if (errors.length === attempts.length) {
            finish();
            reject(combined(errors));
          } else {
            startNext();
          }
        },
      );
      if (started < attempts.length) timer = setTimeout(startNext, stagger);
    };
    startNext();
  });
}

function combined(errors: ReadonlyArray<{ label: string; err: Error }>): Error {
  const code = (errors[0].err as { code?: string }).code;
  if (code !== undefined && errors.every(({ err }) => (err as { code?: string }).code === code)) return errors[0].err;
  return new UnreachableError(`no route answered: ${errors.map(({ label, err }) => `${label}: ${err.message}`).join('; ')}`, { cause: new AggregateError(errors.map(({ err }) => err)) });
}
