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
