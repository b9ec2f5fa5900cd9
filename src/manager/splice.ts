import { finished, type Duplex } from 'node:stream';

/**
 * Pipes a and b both ways with half-close: each side's end becomes the other's end. Resolves
 * once both directions have delivered everything (the writable sides finished), or after an
 * error or premature close on either side has torn both down.
 */
export function splice(a: Duplex, b: Duplex): Promise<void> {
  return new Promise<void>((resolve) => {
    let pending = 2;
    let failed = false;
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      a.destroy(err);
      b.destroy(err);
      resolve();
    };
    const direction = (from: Duplex, to: Duplex): void => {
      corkPerTick(from, to);
      from.pipe(to);
      finished(from, { writable: false }, (err) => {
        if (err) fail(err);
      });
      finished(to, { readable: false }, (err) => {
        if (err) fail(err);
        else if (--pending === 0 && !failed) resolve();
      });
    };
    direction(a, b);
    direction(b, a);
  });
}

/**
 * Holds what `from` hands `to` within one tick, to be written together when the tick ends: a
 * flow delivers a sealed record's plaintext as several pieces at once (cut where the socket
 * reads, the hop frames and the multiplexer frames happened to end), and written one by one they
 * were a send(2) of 20 KiB on average; corked, they are one writev. Runs before pipe's own
 * 'data' listener, so every chunk of the tick is written into the cork; backpressure is pipe's,
 * unchanged (write() still reports the buffered bytes).
 */
function corkPerTick(from: Duplex, to: Duplex): void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    to.uncork();
  };
  from.prependListener('data', () => {
    if (corked || to.writableEnded || to.destroyed) return;
    corked = true;
    to.cork();
    process.nextTick(uncork);
  });
}
