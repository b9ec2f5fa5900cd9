import { EventEmitter, setMaxListeners } from 'node:events';
import { InvalidArgumentError, ManagerError, Reason, RidproxyError } from '../errors.js';
import { Endpoint } from '../id/endpoint.js';
import { Identity } from '../id/identity.js';
import { RoutingId } from '../id/routing-id.js';
import { secureContextFor } from '../secure/index.js';
import { AcceptQueue } from './accept-queue.js';
import type { Flow } from './flow.js';
import type { IncomingVc, VcDecision } from './link.js';
import { LinkPool } from './link-pool.js';
import { DirectListeners } from './listeners.js';
import { DEFAULT_DRAIN_TIMEOUT, resolveManagerOptions, type AcceptOptions, type CloseOptions, type DialOptions, type ListenStatus, type ManagerOptions, type ProxyListenOptions, type ProxyRegistration, type ResolvedManagerOptions } from './options.js';
import { Registrations } from './registrations.js';
import { SharedAttempt } from './shared-attempt.js';
import { VcCache, type VcErrorInfo } from './vc-cache.js';

export type { VcErrorInfo } from './vc-cache.js';

export interface ManagerEvents {
  /** A VC a peer opened to this process failed before it carried flows (refused by authorize, failed authentication, timed out). */
  vcError: [err: RidproxyError, info: VcErrorInfo];
}

/**
 * A process's handle on ridproxy. It owns the identity and the queue of incoming flows, and
 * composes the rest: the pool of hop links (LinkPool), the VCs and their cache (VcCache), direct
 * listeners and proxy registrations.
 */
export class Manager extends EventEmitter<ManagerEvents> {
  readonly identity: Identity;
  /** Resolves once close() has finished. */
  readonly closed: Promise<void>;

  private readonly options: ResolvedManagerOptions;
  private readonly links: LinkPool;
  private readonly vcs: VcCache;
  private readonly direct = new DirectListeners();
  private readonly registrations: Registrations;
  private readonly acceptQueue: AcceptQueue<Flow>;
  private readonly queuedDiscards = new WeakMap<Flow, () => void>();
  private dirty!: { promise: Promise<void>; resolve(): void };
  private isClosing = false;
  /** Aborts handshakes of incoming VCs and shared setups still in progress when close() is called. */
  private readonly closing = new AbortController();
  private resolveClosed!: () => void;

  constructor(options: ManagerOptions = {}) {
    super();
    this.identity = options.identity ?? Identity.generate();
    this.options = resolveManagerOptions(options);
    const isClosing = (): boolean => this.isClosing;
    const attempt = <T>(what: string, run: (signal: AbortSignal) => Promise<T>): SharedAttempt<T> => new SharedAttempt(what, this.options.dialTimeout, this.closing.signal, run);
    this.links = new LinkPool({
      identity: this.identity,
      options: this.options,
      isClosing,
      attempt,
      decide: (incoming) => this.decideVc(incoming),
      circuit: (circuit, local, remoteAt) => void this.vcs.accept(circuit, local, remoteAt),
    });
    this.vcs = new VcCache({
      identity: this.identity,
      options: this.options,
      links: this.links,
      closing: this.closing.signal,
      isClosing,
      attempt,
      flow: (flow, allowed) => this.incomingFlow(flow, allowed),
      vcError: (err, info) => this.emit('vcError', err, info),
    });
    this.registrations = new Registrations({ routingId: this.routingId, options: this.options, links: this.links, isClosing, changed: () => this.markDirty() });
    this.acceptQueue = new AcceptQueue(this.options.acceptBacklog);
    // Every incoming handshake in progress listens for close(), and a busy server has many at
    // once; each removes its listener when done, so the count is bounded by the handshakes.
    setMaxListeners(0, this.closing.signal);
    // The certificate is part of the identity, not of any one VC: make it now, once.
    if (this.options.encryption) secureContextFor(this.identity);
    this.renewDirty();
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  get routingId(): RoutingId {
    return this.identity.routingId;
  }

  /**
   * True while a direct listener or a proxy registration is active: peers may open VCs to this
   * process. Flows peers open on VCs this process dialed are accepted either way.
   */
  get isListening(): boolean {
    return this.direct.size > 0 || this.registrations.size > 0;
  }

  /** Accepts hop connections directly on `address` ("host:port", "[::1]:port" or a port). Resolves to the endpoint to dial. */
  async listen(address: string): Promise<string> {
    this.assertOpen();
    const endpoint = await this.direct.listen(address, this.routingId, (socket) => this.links.accept(socket));
    this.markDirty();
    return endpoint;
  }

  /**
   * Registers this process on the proxy at `endpoint` so clients can reach it by routing ID.
   * Resolves once the proxy confirmed; rejects with the proxy's typed refusal otherwise.
   */
  async proxyListen(name: string, endpoint: string | Endpoint, options: ProxyListenOptions = {}): Promise<ProxyRegistration> {
    this.assertOpen();
    return this.registrations.register(name, endpoint, options);
  }

  status(): ListenStatus {
    const listening = [...this.direct.endpoints, ...this.registrations.endpoints];
    return {
      // One that listens nowhere is still reachable, by routing id, over the VCs it dialed.
      endpoints: listening.length > 0 ? listening : [new Endpoint('', 0, this.routingId).toString()],
      routingId: this.routingId.toString(),
      proxyErrors: this.registrations.proxyErrors(),
      dirty: this.dirty.promise,
    };
  }

  /**
   * Stops direct listeners and proxy registrations, and resets the flows queued on VCs peers
   * opened. The accept() calls pending at that moment reject with ERR_NOT_LISTENING, which ends
   * `for await` loops over the manager. Later accept() calls wait again: for flows peers open
   * on VCs this process dialed, or for anything once it listens again.
   */
  async stopListening(): Promise<void> {
    this.unlisten();
    const queued = this.acceptQueue.drain();
    this.acceptQueue.failWaiters(() => new ManagerError('ERR_NOT_LISTENING', 'stopListening() was called'));
    // Flows on VCs this process dialed never depended on listening: they wait for the next accept().
    for (const flow of queued) if (!flow.conn.dialer || !this.acceptQueue.offer(flow)) flow.destroy();
    this.markDirty();
  }

  private unlisten(): void {
    this.direct.closeAll();
    this.registrations.closeAll();
  }

  /**
   * The next flow a remote process opened to this one: on a VC it opened while this process
   * listened, or on a VC this process dialed (a call back, whether or not it listens). A manager
   * that only dials may therefore wait here too; the wait ends with close(), or stopListening().
   */
  accept(options: AcceptOptions = {}): Promise<Flow> {
    if (this.isClosing) return Promise.reject(new ManagerError('ERR_MANAGER_CLOSED', 'the manager is closed'));
    return this.acceptQueue.take(options.signal).then((flow) => {
      const discard = this.queuedDiscards.get(flow);
      if (discard) {
        flow.off('error', discard);
        flow.off('close', discard);
      }
      flow.markAccepted();
      return flow;
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Flow> {
    for (;;) {
      try {
        yield await this.accept();
      } catch (err) {
        if (err instanceof ManagerError && (err.code === 'ERR_NOT_LISTENING' || err.code === 'ERR_MANAGER_CLOSED')) return;
        throw err;
      }
    }
  }

  /**
   * Opens a flow to the process named by `endpoint`, reusing the VC to its routing ID if there is
   * one. An address-less endpoint (`ridp:///<rid>`) can only use such a VC: ERR_NO_CACHED_VC
   * without one.
   */
  async dial(endpoint: string | Endpoint, options: DialOptions = {}): Promise<Flow> {
    this.assertOpen();
    return this.vcs.dial(typeof endpoint === 'string' ? Endpoint.parse(endpoint) : endpoint, options);
  }

  /**
   * Opens a flow only over an existing VC to the endpoint's routing ID; ERR_NO_CACHED_VC if there
   * is none. A bare RoutingId is enough, since a peer that dialed in may listen nowhere.
   */
  dialCached(endpoint: string | Endpoint | RoutingId, options: Pick<DialOptions, 'sideChannel'> = {}): Flow {
    this.assertOpen();
    const rid = endpoint instanceof RoutingId ? endpoint : (typeof endpoint === 'string' ? Endpoint.parse(endpoint) : endpoint).routingId;
    return this.vcs.dialCached(rid, options.sideChannel ?? false);
  }

  /**
   * Stops listening, then closes every VC gracefully (see CloseOptions), then the connections and
   * registrations. Pending accept() calls reject with ERR_MANAGER_CLOSED once that is done.
   */
  async close(options: CloseOptions = {}): Promise<void> {
    if (this.isClosing) return this.closed;
    const drainTimeout = options.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT;
    if (!(Number.isFinite(drainTimeout) && drainTimeout >= 0)) {
      throw new InvalidArgumentError('ERR_INVALID_OPTION', `close option drainTimeout must be a number of ms, 0 or more, got ${drainTimeout}`);
    }
    this.isClosing = true;
    const closed = new ManagerError('ERR_MANAGER_CLOSED', 'the manager was closed');
    this.closing.abort(closed);
    this.unlisten();
    // Flows nobody accepted have no writer to drain.
    for (const flow of this.acceptQueue.drain()) flow.destroy();
    this.markDirty();
    this.links.dropHandshakes();
    await this.vcs.close(drainTimeout, `the peer's manager (routing id ${this.routingId}) closed`);
    await Promise.all([this.links.close(), this.vcs.closed()]);
    // Pending accept() calls wait through the drain (no flow reaches them now) and end with close().
    this.acceptQueue.failWaiters(() => closed);
    this.dirty.resolve();
    this.resolveClosed();
    return this.closed;
  }

  private assertOpen(): void {
    if (this.isClosing) throw new ManagerError('ERR_MANAGER_CLOSED', 'the manager is closed');
  }

  private incomingFlow(flow: Flow, allowed: true | Promise<boolean>): void {
    if (allowed !== true) {
      void allowed.then((ok) => {
        if (ok) this.incomingFlow(flow, true);
        else flow.destroy();
      });
      return;
    }
    // A flow nobody will accept is reset at once rather than left to hang the peer. Flows on a VC
    // this process dialed are its own to accept, listening or not: Vanadium's flow.Manager takes
    // them for the VC's lifetime, which is what lets a dial-only process be called back.
    if ((!flow.conn.dialer && !this.isListening) || this.isClosing || flow.destroyed) {
      flow.destroy();
      return;
    }
    // Until accept() hands it out, a flow that fails has no owner to hear it: drop it quietly.
    const discard = (): void => this.acceptQueue.remove(flow);
    this.queuedDiscards.set(flow, discard);
    flow.on('error', discard);
    flow.on('close', discard);
    if (!this.acceptQueue.offer(flow)) flow.destroy();
  }

  private decideVc(incoming: IncomingVc): VcDecision {
    if (!incoming.dst.equals(this.routingId)) {
      return { reason: Reason.UnknownDestination, message: `process ${this.routingId} is not a proxy and has no routing id ${incoming.dst}` };
    }
    if (!this.isListening || this.isClosing) return { reason: Reason.Refused, message: `process ${this.routingId} is not listening` };
    return undefined;
  }

  private markDirty(): void {
    const previous = this.dirty;
    this.renewDirty();
    previous?.resolve();
  }

  private renewDirty(): void {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.dirty = { promise, resolve };
  }
}
