import { InvalidArgumentError } from '../errors.js';

/**
 * How long a window must see no traffic before it falls back to its floor: long enough that a
 * transfer pausing between messages keeps its window, short enough that a flow left open for
 * hours does not keep a grown one.
 */
export const WINDOW_IDLE_MS = 2_000;

/**
 * A receive window that sizes itself to the path: the credit-granting side of a yamux stream, of
 * a VC end, and of each leg the proxy relays. The receiver grants credit in batches; each grant
 * opens an epoch, and when the next grant is due the epoch's length is compared with the round
 * trip. Taking a fraction f of the window in less than 4·f round trips means the sender was
 * stopped by the window, not by the path or the reader, so the window doubles (up to `max`).
 * A reader that is slower than the path never grows it: its grants come late. With no traffic
 * for WINDOW_IDLE_MS the window returns to `floor`.
 *
 * Only the size is kept here; the caller still owns the count of granted and consumed bytes,
 * and asks `room()` how much it may grant.
 */
export class ReceiveWindow {
  readonly floor: number;
  readonly max: number;
  #size: number;
  #epochStart: number;
  #lastActive: number;
  /** Called with the growth in bytes: whoever reserves memory for the window can refuse it. */
  readonly #mayGrow: ((growth: number) => boolean) | undefined;

  constructor(floor: number, max: number, mayGrow?: (growth: number) => boolean) {
    if (!(Number.isInteger(floor) && floor > 0 && Number.isInteger(max) && max >= floor)) {
      throw new InvalidArgumentError('ERR_INVALID_OPTION', `a receive window needs 0 < floor <= max, got floor ${floor} and max ${max}`);
    }
    this.floor = floor;
    this.max = max;
    this.#size = floor;
    this.#mayGrow = mayGrow;
    this.#epochStart = this.#lastActive = performance.now();
  }

  /** The window now, after falling back to the floor if it has been idle. */
  get size(): number {
    this.#shrinkIfIdle(performance.now());
    return this.#size;
  }

  /** Notes traffic, so the window is not idle. */
  touch(): void {
    this.#lastActive = performance.now();
  }

  /**
   * Called when a grant is due after `consumed` bytes since the last one, with the round trip in
   * milliseconds (undefined while unknown: the window then stays as it is). Returns the size the
   * grant should fill the window to.
   *
   * The round trip must be the path's, the least one seen on the connection, not the latest: a
   * ping that waited behind this very transfer's data measures the queue the window let build,
   * and growing the window by it builds a longer queue (a bulk flow on loopback grew its windows
   * to the maximum and kept a ping-pong flow beside it 40 ms behind).
   */
  beforeGrant(consumed: number, rtt: number | undefined): number {
    const now = performance.now();
    this.#shrinkIfIdle(now);
    const elapsed = now - this.#epochStart;
    this.#epochStart = now;
    this.#lastActive = now;
    if (rtt === undefined || this.#size >= this.max) return this.#size;
    const fraction = Math.min(consumed / this.#size, 1);
    // A round trip of 0 (same host, timer granularity) still means a fast path: take it as 1 ms.
    if (elapsed < 4 * fraction * Math.max(rtt, 1)) {
      const grown = Math.min(this.#size * 2, this.max);
      if (this.#mayGrow === undefined || this.#mayGrow(grown - this.#size)) this.#size = grown;
    }
    return this.#size;
  }

  #shrinkIfIdle(now: number): void {
    if (this.#size > this.floor && now - this.#lastActive >= WINDOW_IDLE_MS) {
      this.#size = this.floor;
      this.#epochStart = now;
    }
  }
}
