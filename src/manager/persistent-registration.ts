import { EventEmitter } from 'node:events';
import { ConnectionClosedError, Reason } from '../errors.js';
import type { Endpoint } from '../id/endpoint.js';
import type { Manager } from './manager.js';
import type { IngressInfo, ProxyListenOptions, ProxyRegistration } from './options.js';

export interface BackoffOptions {
  /** Delay before the second attempt, in ms; each later one doubles it. */
  initialDelay?: number;
  /** Longest delay between attempts, in ms. */
  maxDelay?: number;
}

export const DEFAULT_INITIAL_DELAY = 100;
/**
 * The longest wait between attempts. Short, so that a server is back within about 2 s of its
 * proxy however long the outage was (the delay stops growing after 5 attempts); the jitter below
 * still spreads a fleet's attempts over a second, and a refused TCP connect costs a down proxy
 * nothing.
 */
export const DEFAULT_MAX_DELAY = 2_000;

/**
 * Delay before reconnect attempt `attempt` (1-based): the first is immediate, then exponential
 * up to the cap, with "equal jitter" (half fixed, half random) so a fleet of servers that lost
 * the same proxy does not reconnect in lockstep.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  if (attempt <= 1) return 0;
  const initial = options.initialDelay ?? DEFAULT_INITIAL_DELAY;
  const cap = options.maxDelay ?? DEFAULT_MAX_DELAY;
  const ceiling = Math.min(cap, initial * 2 ** (attempt - 2));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

export interface PersistentRegistrationEvents {
  registered: [{ endpoint: string; attempt: number }];
  lost: [Error];
  retrying: [{ attempt: number; delay: number; error: Error }];
  /** Another process registered this routing id on the proxy; this registration has stopped and will not retry. */
  conflict: [ConnectionClosedError];
}

/**
 * Keeps a process registered on a proxy: after the link is lost (proxy restarted, network cut,
 * going away) it registers again, forever, with backoff. The first registration must succeed
 * (so a wrong address fails fast); `close()` stops it.
 *
 * It stops by itself when the proxy says the registration was superseded (ERR_SUPERSEDED) while
 * this process still held it: this process registers again only after it has let go of the old
 * connection, so a Superseded on the live one means another process with the same key registered,
 * and registering back would displace the two forever. It emits 'conflict' and settles `done`.
 */
export class PersistentRegistration extends EventEmitter<PersistentRegistrationEvents> {
  readonly name: string;
  private current: ProxyRegistration | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private settleDone!: (err: ConnectionClosedError | undefined) => void;
  /** Settles when the registration stops for good: undefined after close(), the conflict's error when another process took the routing id. */
  readonly done: Promise<ConnectionClosedError | undefined>;

  private constructor(
    private readonly manager: Manager,
    name: string,
    private readonly proxy: string | Endpoint,
    private readonly options: ProxyListenOptions & BackoffOptions,
  ) {
    super();
    this.name = name;
    this.done = new Promise((resolve) => {
      this.settleDone = resolve;
    });
  }

  static async start(manager: Manager, name: string, proxy: string | Endpoint, options: ProxyListenOptions & BackoffOptions = {}): Promise<PersistentRegistration> {
    const persistent = new PersistentRegistration(manager, name, proxy, options);
    const registration = await manager.proxyListen(name, proxy, options);
    persistent.adopt(registration, 1);
    return persistent;
  }

  /** The endpoint clients dial; stable across reconnects (same proxy address, same routing ID). */
  get endpoint(): string | undefined {
    return this.current?.endpoint;
  }

  /** What the proxy's web ingress routes here, as of the last registration. */
  get ingress(): IngressInfo | undefined {
    return this.current?.ingress;
  }

  get isRegistered(): boolean {
    return this.current !== undefined;
  }

  close(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.wake?.();
    this.current?.close();
    this.current = undefined;
    this.settleDone(undefined);
  }

  private adopt(registration: ProxyRegistration, attempt: number): void {
    this.current = registration;
    this.emit('registered', { endpoint: registration.endpoint, attempt });
    void registration.closed.then((err) => {
      this.current = undefined;
      if (this.stopped || err === undefined) return;
      if ((err as { code?: string }).code === 'ERR_SUPERSEDED') {
        this.stopped = true;
        const conflict = new ConnectionClosedError(
          Reason.Superseded,
          `another process with this identity registered on ${this.proxy.toString()} from ${supersededBy(err.message)}`,
        );
        this.emit('conflict', conflict);
        this.settleDone(conflict);
        return;
      }
      this.emit('lost', err);
      void this.reconnect();
    });
  }

  private async reconnect(): Promise<void> {
    let delay = backoffDelay(1, this.options);
    for (let attempt = 1; !this.stopped; attempt++) {
      if (delay > 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          this.retryTimer = setTimeout(resolve, delay);
        });
        this.wake = undefined;
        if (this.stopped) return;
      }
      try {
        const registration = await this.manager.proxyListen(this.name, this.proxy, this.options);
        if (this.stopped) {
          registration.close();
          return;
        }
        this.adopt(registration, attempt);
        return;
      } catch (err) {
        if (this.stopped || (err as { code?: string }).code === 'ERR_MANAGER_CLOSED') return;
        delay = backoffDelay(attempt + 1, this.options);
        this.emit('retrying', { attempt, delay, error: err as Error });
      }
    }
  }
}

/** The new holder's address, which a proxy puts last in its GoAway(Superseded) message (docs/protocol.md 7.2); for people only. */
function supersededBy(message: string): string {
  return / from (\S+)$/.exec(message)?.[1] ?? 'an address the proxy did not say';
}
