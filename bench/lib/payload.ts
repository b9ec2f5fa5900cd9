import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';

/**
 * One random block, written again and again: generating fresh data would cost more CPU than some
 * of the relays under test, and random (not zero) bytes keep any compression from flattering a path.
 */
export const BLOCK = randomBytes(128 * 1024);

/** Monotonic time in nanoseconds as a number. CLOCK_MONOTONIC is machine-wide, so values from two bench processes compare. */
export function nowNs(): number {
  return Number(process.hrtime.bigint());
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Resolves on 'drain'; rejects if the stream closes first, so a broken path cannot hang a writer.
 * Plain listeners, not events.once with an AbortSignal: that allocates an AbortError per wait,
 * which showed up as 3% of a bulk sender's CPU profile, charged to whichever path was measured.
 */
export function drained(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      stream.off('close', onClose);
      resolve();
    };
    const onClose = (): void => {
      stream.off('drain', onDrain);
      reject(new Error('stream closed while writing'));
    };
    stream.once('drain', onDrain);
    stream.once('close', onClose);
  });
}

/** Writes `total` bytes of BLOCK, honouring backpressure. Does not end the stream. */
export async function sendBytes(stream: Writable, total: number): Promise<void> {
  let left = total;
  while (left > 0) {
    const n = Math.min(left, BLOCK.length);
    left -= n;
    if (!stream.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) await drained(stream);
  }
}

/** Bytes received and when the first and last of them arrived (nowNs), as measured by a receiver. */
export interface Receipt {
  bytes: number;
  firstNs: number;
  lastNs: number;
}

export function gbits(bytes: number, ns: number): number {
  return ns > 0 ? (bytes * 8) / ns : Number.NaN;
}

/** Aggregate rate of several receipts timed on one clock: all bytes over first-first to last-last. */
export function aggregateGbits(receipts: readonly Receipt[]): number {
  const bytes = receipts.reduce((sum, r) => sum + r.bytes, 0);
  if (bytes === 0) return Number.NaN;
  const first = Math.min(...receipts.map((r) => r.firstNs));
  const last = Math.max(...receipts.map((r) => r.lastNs));
  return gbits(bytes, last - first);
}
