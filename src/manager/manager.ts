import { createServer, type Server } from 'node:net';
import { EventEmitter, once, setMaxListeners } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  InvalidArgumentError,
  ManagerError,
  Reason,
  RidproxyError,
  TimeoutError,
  UnauthorizedError,
  cannotListen,
  VcClosedError,
  abortReason,
} from '../errors.js';
import { Endpoint, parseAddress } from '../id/endpoint.js';
import { checkHostname } from '../id/hostname.js';
import { Identity } from '../id/identity.js';
import { RoutingId, ridHexProblem } from '../id/routing-id.js';
import { unpinned } from '../hop/dial.js';
import { secureChannel, secureContextFor } from '../secure/index.js';
import type { VirtualCircuit } from '../hop/circuit.js';
import { AcceptQueue } from './accept-queue.js';
import { SharedAttempt } from './shared-attempt.js';
import { firstToSucceed } from './staggered.js';
import type { Flow } from './flow.js';
import type { IncomingVc, Link, VcDecision } from './link.js';
import { LinkPool } from './link-pool.js';
import { DEFAULT_DRAIN_TIMEOUT, resolveManagerOptions, type AcceptOptions, type CloseOptions, type DialOptions, type IngressInfo, type ListenStatus, type ManagerOptions, type ProxyListenOptions, type ProxyRegistration, type ResolvedManagerOptions } from './options.js';
import { VcSession } from './vc-session.js';

interface DirectListener {
  server: Server;
  endpoint: string;
}

interface Registration extends ProxyRegistration {
  link: Link;
  finish(err: Error | undefined): void;
}

/** A RegisterOk document's ingress fields (docs/protocol.md 5.5), keeping only what has the right type. */
function ingressInfo(document: Record<string, unknown>): IngressInfo {
  const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);
  const ingress = typeof document.ingress === 'string' && ridHexProblem(document.ingress) === undefined ? document.ingress : undefined;
  return { hostnames: strings(document.hostnames), urls: strings(document.urls), tcp: strings(document.tcp), ...(ingress !== undefined && { routingId: ingress }) };
}

/**
 * The RegisterOptions document (docs/protocol.md 5.5) for what `options` asks of the proxy's
 * ingress, checked first; `{}` when it asks nothing.
 */
function registerOptions(options: ProxyListenOptions): Record<string, unknown> {
  const document: Record<string, unknown> = {};
  if (options.hostname !== undefined) {
    checkHostname(options.hostname);
    document.name = options.hostname;
  }
  const ports = options.publicPorts;
  if (ports !== undefined && ports.length > 0) {
    const bad = ports.find((port) => !(Number.isInteger(port) && port >= 0 && port <= 65535));
    if (bad !== undefined) throw new InvalidArgumentError('ERR_INVALID_OPTION', `invalid public port ${bad}: expected 0 (any) or 1-65535`);
    document.publicPort = ports.length === 1 ? ports[0] : ports;
  }
  return document;
}

/** Who a failed incoming VC came from. */
export interface VcErrorInfo {
  /** The source routing ID the VC's open frame claimed: unproven. */
  claimedRoutingId: string;
  /** The routing ID the peer proved end to end, when it got that far (e.g. refused by authorize). */
  remoteRoutingId?: string;
}

/**
 * A process's handle on ridproxy: it owns the identity, the hop connections, a cache of VCs
 * (one per remote routing ID, reused by later dials), direct listeners and proxy registrations,
 * and the queue of incoming flows.
 */
export interface ManagerEvents {
  /** A VC a peer opened to this process failed before it carried flows (refused by authorize, failed authentication, timed out). */
  vcError: [err: RidproxyError, info: VcErrorInfo];
}

export class Manager extends EventEmitter<ManagerEvents> {
  readonly identity: Identity;
  /** Resolves once close() has finished. */
  readonly closed: Promise<void>;

  private readonly options: ResolvedManagerOptions;
  private readonly links: LinkPool;
  private readonly directListeners: DirectListener[] = [];
  private readonly registrations = new Map<string, Registration>();
  private readonly proxyErrors = new Map<string, Error | null>();
  private readonly sessions = new Map<string, VcSession>();
  private readonly pendingSessions = new Map<string, SharedAttempt<VcSession>>();
  private readonly allSessions = new Set<VcSession>();
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
    this.links = new LinkPool({
      identity: this.identity,
      options: this.options,
      isClosing: () => this.isClosing,
      attempt: (what, run) => this.attempt(what, run),
      decide: (incoming) => this.decideVc(incoming),
      circuit: (circuit, local, remoteAt) => void this.acceptCircuit(circuit, local, remoteAt),
    });
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
    return this.directListeners.length > 0 || this.registrations.size > 0;
  }

  /** Accepts hop connections directly on `address` ("host:port", "[::1]:port" or a port). Resolves to the endpoint to dial. */
  async listen(address: string): Promise<string> {
    this.assertOpen();
    const { host, port } = parseAddress(address, '127.0.0.1');
    const server = createServer({ noDelay: true }, (socket) => this.links.accept(socket));
    server.listen(port, host);
    try {
      await Promise.race([
        once(server, 'listening'),
        once(server, 'error').then(([err]: Error[]) => {
          throw err;
        }),
      ]);
    } catch (err) {
      throw cannotListen(host, port, err);
    }
    // After listening, the server reports only failed accepts (EMFILE, ENFILE): the listener lives on.
    server.on('error', () => undefined);
    const bound = server.address();
    const boundPort = bound !== null && typeof bound === 'object' ? bound.port : port;
    const endpoint = new Endpoint(host, boundPort, this.routingId).toString();
    this.directListeners.push({ server, endpoint });
    this.markDirty();
    return endpoint;
  }

  /**
   * Registers this process on the proxy at `endpoint` so clients can reach it by routing ID.
   * Resolves once the proxy confirmed; rejects with the proxy's typed refusal otherwise.
   */
  async proxyListen(name: string, endpoint: string | Endpoint, options: ProxyListenOptions = {}): Promise<ProxyRegistration> {
    this.assertOpen();
    if (this.registrations.has(name)) throw new ManagerError('ERR_NAME_IN_USE', `a proxy registration named "${name}" is already active`);
    const proxy = typeof endpoint === 'string' ? Endpoint.parse(endpoint) : endpoint;
    let link: Link;
    let info: Record<string, unknown>;
    try {
      if (proxy.hopRoutingId.isNull() && !options.allowUnpinnedProxy) throw unpinned(proxy, 'register on it');
      link = await this.withDeadline(options.signal, options.timeout ?? this.options.dialTimeout, `registering on proxy ${proxy.address}`, (signal) =>
        this.links.linkTo(proxy, signal),
      );
      // Always a RegisterOptions, even empty: a proxy answers it with what its ingress offers (the routing id name at least).
      info = await link.register(options.token, registerOptions(options));
    } catch (err) {
      this.proxyErrors.set(name, err as Error);
      this.markDirty();
      throw err;
    }
    if (this.isClosing) {
      link.unregister();
      throw new ManagerError('ERR_MANAGER_CLOSED', 'the manager was closed while registering');
    }
    let settle!: (err: Error | undefined) => void;
    const closed = new Promise<Error | undefined>((resolve) => {
      settle = resolve;
    });
    const registration: Registration = {
      name,
      // Clients pin the proxy too: it is the one whose key this link proved.
      endpoint: new Endpoint(proxy.host, proxy.port, this.routingId, link.hop.peerRoutingId).toString(),
      ingress: ingressInfo(info),
      closed,
      link,
      close: () => {
        link.unregister();
        registration.finish(undefined);
      },
      finish: (err) => {
        if (this.registrations.get(name) !== registration) return;
        this.registrations.delete(name);
        link.off('close', onLost);
        link.off('goaway', onLost);
        if (err) this.proxyErrors.set(name, err);
        else this.proxyErrors.delete(name);
        this.markDirty();
        settle(err);
      },
    };
    const onLost = (err?: Error): void => registration.finish(err ?? new VcClosedError(Reason.ConnectionLost, `connection to proxy ${proxy.address} closed`));
    link.on('close', onLost);
    link.on('goaway', onLost);
    this.registrations.set(name, registration);
    this.proxyErrors.set(name, null);
    this.markDirty();
    return registration;
  }

  /** Where this Manager can be reached; one that listens nowhere is still reachable, by routing id, over the VCs it dialed. */
  private endpoints(): string[] {
    const listening = [...this.directListeners.map((l) => l.endpoint), ...[...this.registrations.values()].map((r) => r.endpoint)];
    return listening.length > 0 ? listening : [new Endpoint('', 0, this.routingId).toString()];
  }

  status(): ListenStatus {
    return {
      endpoints: this.endpoints(),
      routingId: this.routingId.toString(),
      proxyErrors: new Map(this.proxyErrors),
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
    // Closing a net.Server stops accepting at once; its callback would also wait for every
    // connection it accepted, which stay open for their VCs.
    for (const { server } of this.directListeners.splice(0, this.directListeners.length)) server.close();
    for (const registration of [...this.registrations.values()]) registration.close();
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
    const target = typeof endpoint === 'string' ? Endpoint.parse(endpoint) : endpoint;
    if (options.token !== undefined && target.hopRoutingId.isNull() && !options.allowUnpinnedProxy) throw unpinned(target, 'present its dial token');
    const session = await this.withDeadline(options.signal, options.timeout ?? this.options.dialTimeout, `dialing ${target}`, async (signal) => {
      const found = await this.sessionTo(target, signal, options);
      // A reused VC was authorized by whoever opened it; this caller's check must pass too.
      if (options.authorize && !(await options.authorize({ publicKey: Buffer.from(found.remotePublicKey), routingId: found.remoteRoutingId }))) {
        throw new UnauthorizedError(`refused peer ${found.remoteRoutingId}: authorize returned false`);
      }
      return found;
    });
    return session.openFlow(options.sideChannel ?? false);
  }

  /**
   * Opens a flow only over an existing VC to the endpoint's routing ID; ERR_NO_CACHED_VC if there
   * is none. A bare RoutingId is enough, since a peer that dialed in may listen nowhere.
   */
  dialCached(endpoint: string | Endpoint | RoutingId, options: Pick<DialOptions, 'sideChannel'> = {}): Flow {
    this.assertOpen();
    const rid = endpoint instanceof RoutingId ? endpoint : (typeof endpoint === 'string' ? Endpoint.parse(endpoint) : endpoint).routingId;
    const session = this.sessions.get(rid.toString());
    if (!session?.isOpen) throw new ManagerError('ERR_NO_CACHED_VC', `no open VC to routing id ${rid}`);
    return session.openFlow(options.sideChannel ?? false);
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
    const message = `the peer's manager (routing id ${this.routingId}) closed`;
    await Promise.all([...this.allSessions].map((session) => session.close(drainTimeout, message)));
    await Promise.all([this.links.close(), ...[...this.allSessions].map((s) => s.closed)]);
    // Pending accept() calls wait through the drain (no flow reaches them now) and end with close().
    this.acceptQueue.failWaiters(() => closed);
    this.dirty.resolve();
    this.resolveClosed();
    return this.closed;
  }

  private assertOpen(): void {
    if (this.isClosing) throw new ManagerError('ERR_MANAGER_CLOSED', 'the manager is closed');
  }

  private sessionTo(target: Endpoint, signal: AbortSignal, options: DialOptions): Promise<VcSession> {
    const key = target.routingId.toString();
    // "Whatever process answers" names no one VC: each such dial sets up its own.
    const shareable = !target.routingId.isNull();
    const cached = this.sessions.get(key);
    if (shareable && cached?.isOpen) return Promise.resolve(cached);
    let attempt = shareable ? this.pendingSessions.get(key) : undefined;
    if (attempt === undefined && !target.hasAddress) {
      return Promise.reject(new ManagerError('ERR_NO_CACHED_VC', `no open VC to routing id ${target.routingId}, and endpoint ${target} names no address to open one at`));
    }
    if (attempt === undefined) {
      const created = this.attempt(`opening a VC to ${target}`, (setup) => this.openSession(target, setup, options));
      if (shareable) {
        this.pendingSessions.set(key, created);
        const forget = (): void => {
          if (this.pendingSessions.get(key) === created) this.pendingSessions.delete(key);
        };
        // Synchronously on abandonment, so a dial right after it starts afresh instead of joining a dead setup.
        created.signal.addEventListener('abort', forget, { once: true });
        created.result.then(forget, forget);
      }
      attempt = created;
    }
    return attempt.join(signal);
  }

  /** A VC to `target`, over the first of its routes to answer (several for a server on several proxies). */
  private openSession(target: Endpoint, signal: AbortSignal, options: DialOptions): Promise<VcSession> {
    const routes = target.routes;
    if (routes.length === 1) return this.openRoute(target, signal, options);
    return firstToSucceed(
      routes.map((route) => ({ label: route.address, run: (routeSignal: AbortSignal) => this.openRoute(route, routeSignal, options) })),
      signal,
      (late) => void late.close(0, 'another route answered first'),
    );
  }

  private async openRoute(target: Endpoint, signal: AbortSignal, options: DialOptions): Promise<VcSession> {
    const link = await this.links.linkTo(target, signal, options.allowUnpinnedProxy);
    const dst = target.routingId.isNull() ? link.hop.peerRoutingId : target.routingId;
    const circuit = await link.openVc(dst, signal, options.token);
    const remote = target.routingId.isNull() ? target.withRoutingId(dst) : target;
    const local = new Endpoint(target.host, target.port, this.routingId).toString();
    if (!this.options.encryption) return this.startSession(circuit, circuit, circuit.remotePublicKey, true, local, remote.toString());
    // The peer must prove, inside the VC, that it holds the key behind the RID we dialed: the proxy is not trusted with that.
    const channel = await secureChannel(circuit, { identity: this.identity, role: 'dialer', expectedRoutingId: dst, authorize: options.authorize, signal });
    return this.startSession(circuit, channel.stream, channel.peerPublicKey, true, local, remote.toString(), channel.rtt);
  }

  /**
   * The acceptor's half of a new VC: the secure handshake, in which the peer must prove the
   * source routing ID its open frame claimed (a proxy, or a peer, may lie about it) and pass our
   * authorize check; then the session.
   */
  private async acceptCircuit(circuit: VirtualCircuit, local: string, remoteAt: (rid: RoutingId) => string): Promise<void> {
    const claimed = circuit.remoteRoutingId;
    if (!this.options.encryption) {
      this.startSession(circuit, circuit, circuit.remotePublicKey, false, local, remoteAt(claimed));
      return;
    }
    let proven: RoutingId | undefined;
    const authorize = this.options.authorize;
    try {
      const channel = await secureChannel(circuit, {
        identity: this.identity,
        role: 'acceptor',
        expectedRoutingId: claimed,
        authorize: (peer) => {
          proven = peer.routingId;
          return authorize ? authorize(peer) : true;
        },
        timeout: this.options.handshakeTimeout,
        signal: this.closing.signal,
      });
      if (this.isClosing) {
        channel.stream.destroy();
        return;
      }
      this.startSession(circuit, channel.stream, channel.peerPublicKey, false, local, remoteAt(channel.peerRoutingId), channel.rtt);
    } catch (err) {
      if (!this.isClosing) this.emit('vcError', err as RidproxyError, { claimedRoutingId: claimed.toString(), remoteRoutingId: proven?.toString() });
    }
  }

  private startSession(
    circuit: VirtualCircuit,
    transport: Duplex,
    remotePublicKey: Buffer,
    dialer: boolean,
    localEndpoint: string,
    remoteEndpoint: string,
    setupRtt?: number,
  ): VcSession {
    const session = new VcSession({
      circuit,
      transport,
      remotePublicKey,
      dialer,
      localEndpoint,
      remoteEndpoint,
      streamWindow: this.options.streamWindow,
      maxStreamWindow: this.options.maxStreamWindow,
      maxStreams: this.options.maxFlowsPerVc,
      keepAliveInterval: this.options.keepAliveInterval,
      pendingAcceptBudget: this.options.pendingAcceptBudget,
      maxPendingAccept: this.options.maxPendingAccept,
      idleTimeout: this.options.vcIdleTimeout,
      setupRtt,
    });
    // Filed under the identity the peer proved, so a dial reuses only a VC to the process it names.
    const key = session.remoteRoutingId.toString();
    this.allSessions.add(session);
    if (!this.sessions.get(key)?.isOpen) this.sessions.set(key, session);
    // An acceptor's peer passed authorize in the handshake; a dialed peer opening flows back must pass it too.
    const authorize = this.options.authorize;
    const peer = { publicKey: Buffer.from(remotePublicKey), routingId: session.remoteRoutingId };
    const allowed: true | Promise<boolean> = !dialer || authorize === undefined ? true : Promise.resolve().then(() => authorize(peer)).then((ok) => ok === true, () => false);
    session.on('flow', (flow: Flow) => this.incomingFlow(flow, allowed));
    void session.closed.then(() => {
      this.allSessions.delete(session);
      if (this.sessions.get(key) === session) this.sessions.delete(key);
    });
    if (this.isClosing) session.destroy();
    return session;
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
    // them for the connection's lifetime, which is what lets a dial-only process be called back.
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

  /** A setup dials share, bounded by dialTimeout and ended by close(). */
  private attempt<T>(what: string, run: (signal: AbortSignal) => Promise<T>): SharedAttempt<T> {
    return new SharedAttempt(what, this.options.dialTimeout, this.closing.signal, run);
  }

  private decideVc(incoming: IncomingVc): VcDecision {
    if (!incoming.dst.equals(this.routingId)) {
      return { reason: Reason.UnknownDestination, message: `process ${this.routingId} is not a proxy and has no routing id ${incoming.dst}` };
    }
    if (!this.isListening || this.isClosing) return { reason: Reason.Refused, message: `process ${this.routingId} is not listening` };
    return undefined;
  }

  /** Runs `operation` with a signal that aborts on the caller's signal or after `timeout` ms. */
  private async withDeadline<T>(outer: AbortSignal | undefined, timeout: number, what: string, operation: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (outer?.aborted) throw abortReason(outer);
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(abortReason(outer!));
    outer?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => controller.abort(new TimeoutError(`${what} timed out after ${timeout} ms`)), timeout);
    try {
      return await new Promise<T>((resolve, reject) => {
        controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
        operation(controller.signal).then(resolve, reject);
      });
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onAbort);
    }
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


