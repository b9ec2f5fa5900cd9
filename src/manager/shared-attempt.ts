import { AbortError, TimeoutError, abortReason } from '../errors.js';

/**
 * A setup that every caller asking for the same thing waits on: a hop connection to one address,
 * a VC to one routing ID. It runs under a signal of its own, never the signal of the caller that
 * happened to start it: that signal aborts once every waiting caller has given up, when the
 * manager closes, or after `timeout`. A caller that gives up fails alone, with its own reason.
 */
export class SharedAttempt<T> {
  /** Aborts when the setup is abandoned, timed out or cut by close(); never once it has settled. */
  readonly signal: AbortSignal;
  /** The setup's own outcome, whoever still waits for it. */
  readonly result: Promise<T>;
  private readonly controller = new AbortController();
  private waiting = 0;
  private settled = false;

  constructor(what: string, timeout: number, closing: AbortSignal, run: (signal: AbortSignal) => Promise<T>) {
    this.signal = this.controller.signal;
    const onClose = (): void => this.controller.abort(abortReason(closing));
    const timer = setTimeout(() => this.controller.abort(new TimeoutError(`${what} timed out after ${timeout} ms`)), timeout);
    this.result = new Promise<T>((resolve, reject) => {
      // Settled at once, not a microtask later: a waiter leaving in between must not abort a setup that succeeded.
      const settle = (): void => {
        this.settled = true;
        clearTimeout(timer);
        closing.removeEventListener('abort', onClose);
      };
      this.signal.addEventListener(
        'abort',
        () => {
          settle();
          reject(this.signal.reason);
        },
        { once: true },
      );
      closing.addEventListener('abort', onClose, { once: true });
      if (closing.aborted) onClose();
      else
        run(this.signal).then(
          (value) => {
            settle();
            resolve(value);
          },
          (err: unknown) => {
            settle();
            reject(err);
          },
        );
    });
    // The setup may fail after every caller left.
    this.result.catch(() => undefined);
  }

  /** The setup's outcome for one caller, who stops waiting, with its own reason, when `signal` aborts. */
  join(signal: AbortSignal): Promise<T> {
    if (this.settled) return this.result;
    if (signal.aborted) return Promise.reject(abortReason(signal));
    this.waiting++;
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        reject(abortReason(signal));
        if (--this.waiting === 0 && !this.settled) this.controller.abort(new AbortError('every caller waiting for the setup gave up'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      void this.result.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }
}
