import { describe, expect, it } from 'vitest';
import { RidproxyError, UnreachableError } from '../../src/errors.js';
import { firstToSucceed } from '../../src/manager/staggered.js';

/** An attempt that settles when told, and records when it started and whether it was aborted. */
function controllable(label: string) {
  let settle!: { resolve: (v: string) => void; reject: (e: Error) => void };
  const state = { started: false, aborted: false };
  return {
    state,
    settle: () => settle,
    attempt: {
      label,
      run: (signal: AbortSignal) =>
        new Promise<string>((resolve, reject) => {
          state.started = true;
          signal.addEventListener('abort', () => (state.aborted = true));
          settle = { resolve, reject };
        }),
    },
  };
}

const tick = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('firstToSucceed (staggered routes)', () => {
  it('starts the next route after the stagger, takes the first success, aborts the rest and discards a late winner', async () => {
    const a = controllable('a');
    const b = controllable('b');
    const c = controllable('c');
    const discarded: string[] = [];
    const result = firstToSucceed([a.attempt, b.attempt, c.attempt], new AbortController().signal, (v) => discarded.push(v), 30);
    expect([a.state.started, b.state.started]).toEqual([true, false]);
    await tick(45);
    expect([b.state.started, c.state.started]).toEqual([true, false]);
    b.settle().resolve('b');
    expect(await result).toBe('b');
    expect([a.state.aborted, c.state.started]).toEqual([true, false]);
    a.settle().resolve('a');
    await tick(1);
    expect(discarded).toEqual(['a']);
  });

  it('moves to the next route at once when one fails', async () => {
    const a = controllable('a');
    const b = controllable('b');
    const result = firstToSucceed([a.attempt, b.attempt], new AbortController().signal, () => undefined, 10_000);
    a.settle().reject(new UnreachableError('refused'));
    await tick(1);
    expect(b.state.started).toBe(true);
    b.settle().resolve('b');
    expect(await result).toBe('b');
  });

  it('rejects with the common error when all fail alike, else ERR_UNREACHABLE naming each route; and with the caller abort', async () => {
    const a = controllable('a');
    const b = controllable('b');
    const same = firstToSucceed([a.attempt, b.attempt], new AbortController().signal, () => undefined, 5);
    const denied = new RidproxyError('ERR_UNAUTHORIZED', 'no token');
    a.settle().reject(denied);
    await tick(1);
    b.settle().reject(new RidproxyError('ERR_UNAUTHORIZED', 'no token either'));
    await expect(same).rejects.toBe(denied);

    const c = controllable('c');
    const d = controllable('d');
    const mixed = firstToSucceed([c.attempt, d.attempt], new AbortController().signal, () => undefined, 5);
    c.settle().reject(new UnreachableError('cannot reach c'));
    await tick(1);
    d.settle().reject(new RidproxyError('ERR_TIMEOUT', 'd timed out'));
    await expect(mixed).rejects.toMatchObject({ code: 'ERR_UNREACHABLE', message: 'no route answered: c: cannot reach c; d: d timed out' });

    const e = controllable('e');
    const controller = new AbortController();
    const aborted = firstToSucceed([e.attempt], controller.signal, () => undefined);
    controller.abort(new RidproxyError('ERR_TIMEOUT', 'dial timed out'));
    await expect(aborted).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    expect(e.state.aborted).toBe(true);
  });
});
