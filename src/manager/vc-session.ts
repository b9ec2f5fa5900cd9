import type { Duplex } from 'node:stream';
import { MuxError, Reason, VcClosedError, type RidproxyError } from '../errors.js';
import { RoutingId } from '../id/routing-id.js';
import type { VirtualCircuit } from '../hop/circuit.js';
import { STARTUP_PINGS } from '../hop/connection.js';
import { YamuxSession, type YamuxStreamInit } from '../mux/index.js';
import { Flow } from './flow.js';

export interface VcSessionInit {
  circuit: VirtualCircuit;
  /**
   * Each flow the remote opens. A callback, not an event: `flow.conn` is in the application's
   * hands, and a listener there would get flows before accept(), and before authorize decided.
   */
  onFlow: (flow: Flow) => void;
  /** What the multiplexer runs over: the end-to-end secure channel inside the circuit, or the circuit itself. */
  transport: Duplex;
  /** The peer's key as authenticated end to end (or as vouched for by the proxy, without encryption). */
  remotePublicKey: Buffer;
  /** True on the process that opened the VC: it is the yamux client (odd stream ids). */
  dialer: boolean;
  localEndpoint: string;
  remoteEndpoint: string;
  streamWindow?: number;
  maxStreamWindow?: number;
  maxStreams: number;
  keepAliveInterval?: number;
  /** Bytes the flows waiting for accept() on this VC may buffer together; see YamuxSessionOptions. */
  pendingAcceptBudget?: number;
  /** Flows waiting for accept() on this VC at once. */
  maxPendingAccept?: number;
  /** Milliseconds a VC with no flows (side-channel flows aside) stays open. */
  idleTimeout: number;
  /** The round trip the secure handshake measured, if there was one: `rtt` until a ping answers. */
  setupRtt?: number;
}

/**
 * A VC between this process and one other, carrying a yamux session whose streams are Flows.
 * This is what `flow.conn` exposes. It closes itself after `idleTimeout` with no flows that
 * keep it alive, and hands each flow the remote opens to `onFlow`.
 */
export class VcSession {
  // The layers below stay inside: a flow's `conn` is this VC, not a way into its multiplexer or circuit.
  readonly #circuit: VirtualCircuit;
  readonly #mux: YamuxSession;
  readonly remotePublicKey: Buffer;
  /** The routing ID of `remotePublicKey`: the identity the peer proved, not the one its open frame claimed. */
  readonly remoteRoutingId: RoutingId;
  /** True when this process opened the VC: flows the peer opens on it are accepted whether or not this process listens. */
  readonly dialer: boolean;
  readonly localEndpoint: string;
  readonly remoteEndpoint: string;
  /** Resolves when the VC ends: undefined for a clean close, the reason otherwise. Never rejects. */
  readonly closed: Promise<Error | undefined>;
  /** Date.now() of the last flow opened or accepted on this VC. */
  lastUsed = Date.now();

  readonly #flows = new Set<Flow>();
  #settled = false;
  readonly #setupRtt: number | undefined;
  #keepAliveFlows = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  readonly #idleTimeout: number;

  constructor(init: VcSessionInit) {
    this.#circuit = init.circuit;
    this.remotePublicKey = init.remotePublicKey;
    this.remoteRoutingId = RoutingId.fromPublicKey(init.remotePublicKey);
    this.dialer = init.dialer;
    this.localEndpoint = init.localEndpoint;
    this.remoteEndpoint = init.remoteEndpoint;
    this.#idleTimeout = init.idleTimeout;
    this.#setupRtt = init.setupRtt;
    this.#mux = new YamuxSession(init.transport, {
      client: init.dialer,
      streamWindow: init.streamWindow,
      maxStreamWindow: init.maxStreamWindow,
      maxStreams: init.maxStreams,
      keepAliveInterval: init.keepAliveInterval,
      // Incoming flows wait in the manager's accept queue; accept() marks them taken.
      deferAccept: true,
      pendingAcceptBudget: init.pendingAcceptBudget,
      maxPendingAccept: init.maxPendingAccept,
      createStream: (streamInit: YamuxStreamInit) => new Flow(streamInit, this),
    });
    this.#mux.on('stream', (flow: Flow) => {
      this.#track(flow, false);
      init.onFlow(flow);
    });
    // A VC closed underneath the session (peer lost, proxy gone) must fail the flows with its own
    // typed reason, so this runs before the multiplexer's generic transport-error handling. Once
    // the multiplexer has ended the transport every flow is done both ways, and the VC failing
    // then (the peer's close crossing ours) loses nothing.
    const failFlows = (err: Error): void => {
      if (!init.transport.writableEnded) this.#mux.destroy(err);
    };
    this.#circuit.prependListener('error', failFlows);
    if (init.transport !== init.circuit) init.transport.prependListener('error', failFlows);
    this.#circuit.once('close', () => {
      // The secure channel may have torn the circuit down because of its own failure (an integrity check): that is the reason.
      const reason = this.#circuit.errored ?? init.transport.errored ?? new VcClosedError(Reason.Normal, `VC to ${this.remoteRoutingId} closed`);
      if (!this.#mux.isClosed) this.#mux.destroy(reason);
    });
    this.closed = this.#mux.closed.then((err) => {
      this.#settled = true;
      this.#clearIdle();
      init.transport.destroy();
      this.#circuit.destroy();
      return err;
    });
    // The flows' windows are tuned by the multiplexer's own least round trip, so pings measure
    // it now rather than at the first keepalive (they also give `rtt` when no handshake timed
    // it), a few back to back for the reason of STARTUP_PINGS.
    const mux = this.#mux;
    void (async () => {
      for (let i = 0; i < STARTUP_PINGS && !mux.isClosed; i++) await mux.ping();
    })().catch(() => undefined);
    this.#armIdle();
  }

  /** The receive window of this VC end now: it grows with the path from `vcWindow` toward `maxVcWindow`. */
  get receiveWindow(): number {
    return this.#circuit.receiveWindow;
  }

  /**
   * Pings the peer's multiplexer and resolves to the round trip in milliseconds. Frames are
   * ordered, so by then the peer has handled everything this side sent before the ping.
   */
  ping(): Promise<number> {
    return this.#mux.ping();
  }

  /** Round-trip time in milliseconds: of the last keepalive ping, or of the VC's setup before one was answered. */
  get rtt(): number | undefined {
    return this.#mux.rtt ?? this.#setupRtt;
  }

  get isOpen(): boolean {
    return !this.#mux.isClosed && !this.#circuit.destroyed;
  }

  openFlow(sideChannel: boolean): Flow {
    if (!this.isOpen) throw new MuxError('ERR_SESSION_CLOSED', `VC to ${this.remoteRoutingId} is closed`);
    const flow = this.#mux.openStream() as Flow;
    this.#track(flow, sideChannel);
    return flow;
  }

  /** Closes the VC now; open flows are destroyed (with `err` if given, else without an error event). */
  destroy(err?: RidproxyError): void {
    this.#mux.destroy(err);
  }

  /**
   * Closes the VC gracefully: no new flows either way, and this side of every flow ended after
   * what was written to it. The VC closes as soon as both sides of every flow are closed, or
   * once the peer has received everything this side wrote (a ping sent after the last byte has
   * come back), as by goAway(message): flows the peer has read to the end close cleanly there.
   * Past `drainTimeout` ms it is torn down that way regardless.
   */
  async close(drainTimeout: number, message: string): Promise<void> {
    this.#mux.close();
    const flows = [...this.#flows];
    for (const flow of flows) {
      // close() has taken the flows over: a peer resetting one now must not crash an application
      // that stopped handling its errors. Listeners of its own still hear them.
      flow.on('error', () => undefined);
      if (!flow.writableEnded) flow.end();
    }
    const written = Promise.all(flows.map((flow) => (flow.writableFinished || flow.destroyed ? undefined : new Promise((resolve) => flow.once('close', resolve).once('finish', resolve)))));
    // Every byte of a finished flow is with the transport, so a ping written now follows them all.
    const delivered = written.then(() => this.#mux.ping()).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, drainTimeout);
    });
    await Promise.race([this.closed, delivered, expired]);
    clearTimeout(timer);
    if (!this.#settled) this.goAway(message);
    await this.closed;
  }

  /**
   * Closes the VC now, on purpose: the peer's flows fail with ERR_GOING_AWAY and `message`
   * (those it had read to the end just close), which it can tell from a crash; flows here close
   * without an error event. The CloseVc goes first so that the multiplexer's teardown does not
   * send a bare close of its own.
   */
  goAway(message: string): void {
    this.#circuit.abort(Reason.GoingAway, message);
    this.#mux.destroy();
  }

  #track(flow: Flow, sideChannel: boolean): void {
    this.lastUsed = Date.now();
    this.#flows.add(flow);
    flow.once('close', () => this.#flows.delete(flow));
    if (sideChannel) return;
    this.#keepAliveFlows++;
    this.#clearIdle();
    flow.once('close', () => {
      this.#keepAliveFlows--;
      this.lastUsed = Date.now();
      if (this.#keepAliveFlows === 0) this.#armIdle();
    });
  }

  #armIdle(): void {
    if (this.#idleTimeout <= 0 || !this.isOpen) return;
    this.#clearIdle();
    this.#idleTimer = setTimeout(() => {
      // Side-channel flows do not hold the VC open: they end with it.
      if (this.#keepAliveFlows === 0) this.goAway(`the peer closed the VC after ${this.#idleTimeout} ms without flows`);
    }, this.#idleTimeout);
    this.#idleTimer.unref();
  }

  #clearIdle(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }
}
