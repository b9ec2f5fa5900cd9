import { EventEmitter } from 'node:events';
import type { Server as GrpcServer } from '@grpc/grpc-js';
import { ManagerError, type RidproxyError } from '../errors.js';
import type { Endpoint } from '../id/endpoint.js';
import type { Flow } from '../manager/flow.js';
import type { Manager } from '../manager/manager.js';
import type { DialOptions } from '../manager/options.js';
import { backoffDelay, type BackoffOptions } from '../manager/persistent-registration.js';
import type { VcSession } from '../manager/vc-session.js';
import { serveGrpc, type GrpcServing, type GrpcServingCloseOptions, type ServeGrpcOptions } from './serve.js';

/** serveGrpc's credentials, the backoff between dials (default 100 ms doubling to 30 s), and what each dial to the hub takes. */
export interface ServeGrpcReverseOptions extends ServeGrpcOptions, BackoffOptions, Pick<DialOptions, 'token' | 'allowUnpinnedProxy' | 'authorize' | 'timeout'> {}

export interface GrpcReverseEvents {
  /**
   * A VC to the hub is up again and held open (the first one is what start() resolves with);
   * `attempt` numbers the dial that made it, counting from the loss of the last VC that
   * lasted (1 = the first dial after it).
   */
  connected: [{ vc: VcSession; attempt: number }];
  /** The VC, or the flow holding it open, ended; a new dial follows. */
  lost: [err: Error];
  /** Dial `attempt` failed with `error`; the next one starts in `delay` ms. */
  retrying: [{ attempt: number; delay: number; error: Error }];
}

/**
 * A VC that lasted this long was not a flap: its loss starts the backoff again from an
 * immediate dial. A shorter one continues it, so a hub that closes every held flow at once is
 * dialed at most every maxDelay, not in a loop.
 */
const STABLE_AFTER = 10_000;

/**
 * An agent's side of a reverse tunnel: it keeps a VC to the hub open and serves `server` on the
 * flows the hub opens back on it, so the hub can call an agent that listens nowhere.
 *
 * The VC stays open because one flow on it does: a flow that is not a side channel keeps both ends'
 * `vcIdleTimeout` from running, and that is the only thing that does, so the agent opens one and
 * never writes to it. When it ends (the VC lost, the proxy gone, the hub closing it) the agent
 * dials again, at once and then with jittered exponential backoff (`backoffDelay`: doubling from
 * `initialDelay` up to `maxDelay`), for ever, until close() or the manager's close().
 */
export class GrpcReverseServing extends EventEmitter<GrpcReverseEvents> implements GrpcServing {
  /** Settles when the agent stops: after close(), or once the manager closed or stopped listening (which ends serveGrpc). */
  readonly done: Promise<void>;
  private held: Flow | undefined;
  private heldSince = 0;
  /** Dials since the start or since losing a VC that lasted STABLE_AFTER: the backoff's position. */
  private attempts = 0;
  private stopped = false;
  private readonly stop = new AbortController();
  private retryTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly manager: Manager,
    private readonly hub: string | Endpoint,
    private readonly serving: GrpcServing,
    private readonly dialOptions: DialOptions,
    private readonly backoff: BackoffOptions,
  ) {
    super();
    this.done = serving.done.then(() => this.halt());
  }

  /** Serves, then dials the hub; rejects (and serves nothing) if that first dial fails, so a wrong endpoint fails fast. */
  static async start(manager: Manager, hub: string | Endpoint, server: GrpcServer, options: ServeGrpcReverseOptions = {}): Promise<GrpcReverseServing> {
    const { credentials, initialDelay, maxDelay, ...dialOptions } = options;
    const serving = serveGrpc(manager, server, { credentials });
    const agent = new GrpcReverseServing(manager, hub, serving, dialOptions, { initialDelay, maxDelay });
    let first: Flow;
    try {
      first = await agent.dial();
    } catch (err) {
      await agent.close({ drainTimeout: 0 });
      throw err;
    }
    agent.attempts = 1;
    agent.adopt(first);
    // As after a VC that lasted: the first loss is dialed again at once.
    agent.attempts = 0;
    return agent;
  }

  /** True while a VC to the hub is held open. */
  get isConnected(): boolean {
    return this.held !== undefined;
  }

  /** The VC to the hub, while there is one. */
  get vc(): VcSession | undefined {
    return this.held?.conn;
  }

  /**
   * Stops dialing, closes the serving (calls in progress get `drainTimeout`, as serveGrpc's close),
   * then resets the flow that held the VC open: the VC then closes after `vcIdleTimeout` unless
   * something else uses it.
   */
  close(options: GrpcServingCloseOptions = {}): Promise<void> {
    if (this.closing === undefined) {
      this.halt(true);
      this.closing = this.serving.close(options).finally(() => this.release());
    }
    return this.closing;
  }

  private dial(): Promise<Flow> {
    return this.manager.dial(this.hub, { ...this.dialOptions, signal: this.stop.signal });
  }

  /** No more dials, from whatever stops the agent; close() keeps the held flow until it has drained the calls. */
  private halt(keepHeld = false): void {
    if (this.stopped) return;
    this.stopped = true;
    this.stop.abort();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.wake?.();
    if (!keepHeld) this.release();
  }

  private release(): void {
    const held = this.held;
    this.held = undefined;
    held?.destroy();
  }

  private adopt(flow: Flow): void {
    this.held = flow;
    this.heldSince = Date.now();
    // The hub has nothing to say on it; a hub ending it lets it go.
    flow.resume();
    flow.once('end', () => flow.end());
    flow.on('error', () => undefined);
    flow.once('close', () => this.lost(flow));
    this.emit('connected', { vc: flow.conn, attempt: this.attempts });
  }

  private lost(flow: Flow): void {
    if (this.held !== flow) return;
    this.held = undefined;
    if (this.stopped) return;
    this.emit('lost', flow.errored ?? new ManagerError('ERR_END_OF_FLOW', 'the hub closed the flow that held the VC open'));
    if (Date.now() - this.heldSince >= STABLE_AFTER) this.attempts = 0;
    void this.redial();
  }

  private async redial(): Promise<void> {
    let delay = backoffDelay(++this.attempts, this.backoff);
    while (!this.stopped) {
      if (delay > 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          this.retryTimer = setTimeout(resolve, delay);
        });
        this.wake = undefined;
        this.retryTimer = undefined;
        if (this.stopped) return;
      }
      try {
        const flow = await this.dial();
        if (this.stopped) {
          flow.destroy();
          return;
        }
        this.adopt(flow);
        return;
      } catch (err) {
        if (this.stopped || (err as RidproxyError).code === 'ERR_MANAGER_CLOSED') return;
        const attempt = this.attempts;
        delay = backoffDelay(++this.attempts, this.backoff);
        this.emit('retrying', { attempt, delay, error: err as Error });
      }
    }
  }
}

/** `GrpcReverseServing.start`, named as serveGrpc and grpcBridge are. */
export function serveGrpcReverse(manager: Manager, hub: string | Endpoint, server: GrpcServer, options?: ServeGrpcReverseOptions): Promise<GrpcReverseServing> {
  return GrpcReverseServing.start(manager, hub, server, options);
}
