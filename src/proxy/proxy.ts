import { createServer, type Server, type Socket } from 'node:net';
import { EventEmitter, once } from 'node:events';
import { ConnectionClosedError, ProtocolError, Reason, cannotListen, codeForReason, type RidproxyError } from '../errors.js';
import { Endpoint } from '../id/endpoint.js';
import { Identity } from '../id/identity.js';
import type { RoutingId } from '../id/routing-id.js';
import { HopConnection, ignoreSocketError } from '../hop/connection.js';
import { FrameType, decodeRegistrationDocument, payloadOf, type Frame } from '../wire/index.js';
import { Admission } from './admission.js';
import { CircuitTable } from './circuits.js';
import { resolveProxyOptions, type ProxyOptions, type ReloadableProxyOptions, type ResolvedProxyOptions } from './options.js';
import { newProxyConnection, type ProxyConnection, type ProxyCounters } from './proxy-connection.js';
import { Registry, supersededMessage, type RegisterOutcome } from './registry.js';
import type { RemoteRoutes } from './remote.js';
import type { ProxyEvents, ProxyRefusedEvent } from './events.js';
import { MAX_STATUS_SERVERS, sendStatus, sendStatusRefusal, statusRefusal, type ProxyServerReport, type ProxyStatusReport } from './status.js';

/**
 * What a connection waiting for a handshake slot may have read ahead: far more than an
 * initiator's first flight (preface and Hello), so a FIN behind it is seen; past it, the socket
 * is left unread until its turn.
 */
const MAX_READ_AHEAD = 4096;

interface WaitingConnection {
  group: string;
  address: string;
  since: number;
  /** Read ahead while waiting, handed back to the socket at its turn; a connection that has sent something may take a slot. */
  received: Buffer[];
  receivedBytes: number;
  onReadable(): void;
  onEnd(): void;
}

export * from './options.js';
export type { RemoteRoute, RemoteRoutes } from './remote.js';
export type { ProxyConnection } from './proxy-connection.js';
export { MAX_STATUS_SERVERS, type ProxyServerReport, type ProxyStatusReport } from './status.js';

/** What a shutting-down proxy tells its processes, in its GoAway and in the CloseVc of every VC it ends. */
const SHUTTING_DOWN = 'the proxy is shutting down';
/** Milliseconds, once the proxy closed its connections, before it drops the sockets of peers that never close theirs. */
const SHUTDOWN_LINGER = 1000;

export interface ProxyStats {
  connections: number;
  registrations: number;
  vcs: number;
  /** Bytes written to hop sockets that the kernel has not yet taken, summed now. */
  bufferedBytes: number;
  /** Highest bufferedBytes seen on any single hop connection. */
  peakConnectionBufferedBytes: number;
  /** Window bytes committed to open VCs (the budget's current use). */
  reservedBytes: number;
  /** Bytes the proxy holds in VC queues (received, not yet forwarded), now and at most. */
  queuedBytes: number;
  peakQueuedBytes: number;
  bytesForwarded: number;
  /** The part of bytesForwarded delivered to servers (the VCs' acceptors), and to clients (their openers). */
  bytesToServers: number;
  bytesToClients: number;
  vcsRejected: number;
  protocolErrors: number;
  /** Connections refused or dropped by a limit (count, per address, handshake queue, handshake or idle time). */
  connectionsRefused: number;
  /** Handshakes the proxy is working on now (at most maxHandshakes), and the most ever at once. */
  handshakesInProgress: number;
  peakHandshakesInProgress: number;
  /** Accepted connections waiting for a handshake slot now. */
  handshakesQueued: number;
  /** Frames for VCs that had just closed, dropped as the protocol allows. */
  staleFrames: number;
}

/**
 * A ridproxy proxy: it admits hop connections (admission.ts), keeps the registrations
 * (registry.ts) and routes VCs between them (circuits.ts), never reading what they carry. This
 * class owns the listening socket and the connections' lifecycle: idle timeouts, going away and
 * shutdown. It reports each registration, refusal and VC as an event (events.ts), never one per
 * frame.
 */
export class Proxy extends EventEmitter<ProxyEvents> {
  readonly identity: Identity;
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;

  private readonly server: Server;
  private readonly options: ResolvedProxyOptions;
  private readonly connections = new Set<ProxyConnection>();
  private readonly handshaking = new Set<Socket>();
  /**
   * Accepted connections waiting for a handshake slot, oldest first (a Map keeps insertion order
   * and lets one that closes leave from anywhere in the line).
   */
  private readonly waiting = new Map<Socket, WaitingConnection>();
  /** The waiting connections that have spoken, in the order they did: the ones a free slot goes to (never a scan past silent ones). */
  private readonly ready = new Set<Socket>();
  /** Due when the oldest waiting connection has waited handshakeTimeout ms. */
  private waitTimer: NodeJS.Timeout | undefined;
  private peakHandshakes = 0;
  /** Every accepted socket until it closes, so shutdown can bound the wait for lingering ones. */
  private readonly sockets = new Set<Socket>();
  private readonly counters: ProxyCounters = { bytesForwarded: 0, bytesToServers: 0, vcsRejected: 0, protocolErrors: 0, staleFrames: 0, peakConnectionBufferedBytes: 0, queuedBytes: 0, peakQueuedBytes: 0, connectionsRefused: 0 };
  private readonly admission: Admission;
  private readonly registry: Registry;
  private readonly circuits: CircuitTable;
  private closing: Promise<void> | undefined;
  private readonly startedAt = Date.now();
  private remote: RemoteRoutes | undefined;

  private constructor(server: Server, identity: Identity, host: string, port: number, options: ResolvedProxyOptions) {
    super();
    this.server = server;
    this.identity = identity;
    this.host = host;
    this.port = port;
    this.endpoint = new Endpoint(host, port, identity.routingId).toString();
    this.options = options;
    this.admission = new Admission(this.options);
    this.registry = new Registry(this.options, this.endpoint);
    this.circuits = new CircuitTable(this.options, this.registry, this.counters, this.endpoint, {
      draining: () => this.closing !== undefined,
      refuseToken: (conn, message) => this.refuseToken(conn, message),
      events: this,
      remote: () => this.remote,
      vcsChanged: (conn) => {
        this.closeIfIdle(conn);
        this.watchIdle(conn);
      },
    });
    server.on('connection', (socket) => this.accept(socket));
    // After listening, the server reports only failed accepts (EMFILE, ENFILE): the listener lives on.
    server.on('error', () => this.counters.connectionsRefused++);
  }

  /** Starts a proxy listening on host:port (default 127.0.0.1 and a free port). */
  static async listen(options: ProxyOptions = {}): Promise<Proxy> {
    // Checked before the socket exists: a bad option must not leave a listener behind.
    const resolved = resolveProxyOptions(options);
    const host = options.host ?? '127.0.0.1';
    const server = createServer({ noDelay: true });
    // A deep accept queue so a burst of connections (servers reconnecting after a restart) is not dropped by the kernel.
    server.listen({ port: options.port ?? 0, host, backlog: 4096 });
    try {
      // once() of 'listening' rejects with the error itself.
      await once(server, 'listening');
    } catch (err) {
      throw cannotListen(host, options.port ?? 0, err);
    }
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy server has no TCP address');
    return new Proxy(server, options.identity ?? Identity.generate(), host, address.port, resolved);
  }

  get routingId(): RoutingId {
    return this.identity.routingId;
  }

  /**
   * Sends VCs for routing ids no connection here holds to `routes` (a cluster), and treats the
   * hop peers it names members as the cluster's proxies; undefined turns it off again. Applies to
   * connections established from now on.
   */
  useRemoteRoutes(routes: RemoteRoutes | undefined): void {
    this.remote = routes;
  }

  /**
   * Takes a hop connection this proxy dialed to another proxy of its cluster (a member, by
   * RemoteRoutes.isMember) and routes its frames as it routes an accepted connection's: the
   * returned connection is what RemoteRoutes.resolve hands back as a VC's acceptor. It is closed
   * with the proxy, and never for being idle: its owner decides.
   */
  adoptLink(hop: HopConnection): ProxyConnection {
    const conn = newProxyConnection(hop, `cluster proxy ${hop.peerRoutingId}`, true);
    if (this.closing) {
      hop.close(Reason.GoingAway, SHUTTING_DOWN);
      return conn;
    }
    this.sockets.add(hop.socket);
    hop.socket.once('close', () => this.sockets.delete(hop.socket));
    this.connections.add(conn);
    hop.on('close', (err: RidproxyError | undefined) => this.drop(conn, err));
    // A peer going away (shutting down) is closed once its last VC is done.
    hop.on('goaway', () => this.closeIfIdle(conn));
    hop.start((frame) => this.route(conn, frame));
    return conn;
  }

  /**
   * Ends the registration of `rid`, if a connection here holds it, because the same key
   * registered on another proxy of the cluster: the holder gets GoAway(Superseded) naming
   * `newHolder` (the address the newcomer connected from) and `proxy` (where), as a
   * registration superseded here would (docs/protocol.md 7.2). True if there was one.
   */
  supersede(rid: RoutingId, newHolder: string, proxy: string): boolean {
    const conn = this.registry.lookup(rid);
    if (conn === undefined) return false;
    conn.hop.close(Reason.Superseded, supersededMessage(rid.toString(), newHolder, proxy));
    return true;
  }

  /** Whether a server holds the registration of `rid` now. */
  isRegistered(rid: RoutingId): boolean {
    return this.registry.lookup(rid) !== undefined;
  }

  /** True while the proxy accepts connections: from `listen()` until `close()` is called. */
  get listening(): boolean {
    return this.closing === undefined && this.server.listening;
  }

  /**
   * Replaces the admission settings given: the registration allow-list and the tokens (a key
   * present with the value undefined turns that check off; a key left out keeps its setting).
   * Nothing open is dropped or checked again: connections, registrations and VCs carry on, and
   * the new settings apply to the next registration, dial and status request. `proxy start`
   * calls it on SIGHUP.
   */
  reload(settings: ReloadableProxyOptions): void {
    for (const key of ['registrationToken', 'dialToken', 'statusToken', 'registrationAllowList'] as const) {
      if (key in settings) (this.options as ReloadableProxyOptions)[key] = settings[key] as never;
    }
  }

  stats(): ProxyStats {
    let vcs = 0;
    let bufferedBytes = 0;
    for (const conn of this.connections) {
      bufferedBytes += conn.hop.bufferedBytes;
      vcs += conn.opened;
    }
    return {
      connections: this.connections.size,
      registrations: this.registry.size,
      vcs,
      bufferedBytes,
      peakConnectionBufferedBytes: this.counters.peakConnectionBufferedBytes,
      reservedBytes: this.circuits.reserved,
      queuedBytes: this.counters.queuedBytes,
      peakQueuedBytes: this.counters.peakQueuedBytes,
      bytesForwarded: this.counters.bytesForwarded,
      bytesToServers: this.counters.bytesToServers,
      bytesToClients: this.counters.bytesForwarded - this.counters.bytesToServers,
      vcsRejected: this.counters.vcsRejected,
      protocolErrors: this.counters.protocolErrors,
      staleFrames: this.counters.staleFrames,
      connectionsRefused: this.counters.connectionsRefused,
      handshakesInProgress: this.handshaking.size,
      peakHandshakesInProgress: this.peakHandshakes,
      handshakesQueued: this.waiting.size,
    };
  }

  /** Every registered server, as `proxy status` shows one. */
  *servers(): Generator<ProxyServerReport> {
    const now = Date.now();
    for (const [routingId, conn] of this.registry.entries()) {
      yield {
        routingId,
        address: conn.hop.peerLabel,
        vcs: conn.vcs.size,
        bytesSent: conn.bytesIn,
        bytesReceived: conn.bytesOut,
        connectedSeconds: Math.round((now - conn.connectedAt) / 1000),
      };
    }
  }

  /** What `proxy status` shows: registered servers (at most MAX_STATUS_SERVERS of them) and traffic. */
  report(): ProxyStatusReport {
    const now = Date.now();
    const servers: ProxyServerReport[] = [];
    for (const server of this.servers()) {
      if (servers.length === MAX_STATUS_SERVERS) break;
      servers.push(server);
    }
    const stats = this.stats();
    return {
      endpoint: this.endpoint,
      routingId: this.routingId.toString(),
      uptimeSeconds: Math.round((now - this.startedAt) / 1000),
      connections: stats.connections,
      vcs: stats.vcs,
      bytesForwarded: stats.bytesForwarded,
      bufferedBytes: stats.bufferedBytes,
      registrations: this.registry.size,
      servers,
    };
  }

  /**
   * Stops accepting connections, tells every connected process the proxy is going away, lets
   * open VCs finish for up to `drainTimeout` ms, then drops whatever is left.
   */
  close(options: { drainTimeout?: number } = {}): Promise<void> {
    this.closing ??= this.shutdown(options.drainTimeout ?? 0);
    return this.closing;
  }

  private async shutdown(drainTimeout: number): Promise<void> {
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    clearTimeout(this.waitTimer);
    for (const socket of this.waiting.keys()) socket.destroy();
    this.ready.clear();
    for (const socket of this.handshaking) socket.destroy();
    for (const conn of this.connections) {
      conn.hop.goAway(Reason.GoingAway, SHUTTING_DOWN);
      this.closeIfIdle(conn);
    }
    if (drainTimeout > 0 && this.connections.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...this.connections].map((conn) => conn.hop.closed)),
        new Promise((resolve) => {
          timer = setTimeout(resolve, drainTimeout);
        }),
      ]);
      clearTimeout(timer);
    }
    // The VCs still open end as going away, on both ends: their processes are fine, and must not
    // be told a connection was lost. Each connection is closed once its last VC is (closeIfIdle).
    for (const conn of [...this.connections]) this.circuits.closeAll(conn, Reason.GoingAway, SHUTTING_DOWN);
    for (const conn of [...this.connections]) conn.hop.close(Reason.GoingAway, SHUTTING_DOWN);
    // Closing sockets deliver what was queued and wait for the peer's FIN; one that stopped
    // reading never sends it, so after SHUTDOWN_LINGER whatever socket is left is dropped.
    const linger = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, SHUTDOWN_LINGER);
    await Promise.all([...this.connections].map((conn) => conn.hop.closed));
    await serverClosed;
    clearTimeout(linger);
  }

  private accept(socket: Socket): void {
    // From the start: a connection waiting for its handshake may be reset before anything else listens to it.
    socket.on('error', ignoreSocketError);
    if (this.closing) {
      socket.destroy();
      return;
    }
    const address = `${socket.remoteAddress}:${socket.remotePort}`;
    const held = this.handshaking.size + this.waiting.size + this.connections.size;
    const { group, refused } = this.admission.admit(socket.remoteAddress ?? 'unknown', held);
    if (refused !== undefined) {
      // Refused before any parsing: a flood must cost the proxy as little as possible.
      this.counters.connectionsRefused++;
      socket.destroy();
      this.refused({ kind: 'connection', ...refused, address, addressGroup: group });
      return;
    }
    const { maxHandshakes, maxQueuedHandshakes } = this.options;
    if (this.handshaking.size >= maxHandshakes && this.waiting.size >= maxQueuedHandshakes) {
      this.admission.release(group);
      this.counters.connectionsRefused++;
      socket.destroy();
      const reason = `${maxQueuedHandshakes} connections already wait for one of the proxy's ${maxHandshakes} handshake slots`;
      this.refused({ kind: 'connection', code: 'ERR_LIMIT', reason, address, addressGroup: group });
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.leaveLine(socket);
      this.admission.release(group);
    });
    // Nothing is sent until its turn, and the handshake timeout starts once the proxy works on
    // it, so waiting costs the peer no attempt. What the peer sends meanwhile (its first flight)
    // is read ahead into a small buffer, so that a peer giving up (its FIN) leaves the line at
    // once rather than getting a handshake it no longer wants. A connection gets a slot only once
    // it has spoken (the initiator's Hello comes first), so silent ones cannot take every slot;
    // they wait, and go at the wait bound.
    const entry: WaitingConnection = {
      group,
      address,
      since: Date.now(),
      received: [],
      receivedBytes: 0,
      onReadable: () => {
        const spoke = entry.receivedBytes > 0;
        for (let chunk: Buffer | null; entry.receivedBytes < MAX_READ_AHEAD && (chunk = socket.read() as Buffer | null) !== null; ) {
          entry.received.push(chunk);
          entry.receivedBytes += chunk.length;
        }
        if (spoke || entry.receivedBytes === 0) return;
        this.ready.add(socket);
        this.admitWaiting();
      },
      // Its 'close' takes it out of the line; until then admitWaiting skips it as destroyed.
      onEnd: () => socket.destroy(),
    };
    this.waiting.set(socket, entry);
    socket.on('readable', entry.onReadable);
    socket.once('end', entry.onEnd);
    this.waitTimer ??= setTimeout(() => this.expireWaiting(), this.options.handshakeTimeout).unref();
  }

  /** Starts the handshakes of waiting connections, oldest first, while there are free slots. */
  private admitWaiting(): void {
    if (this.closing) return;
    for (const socket of this.ready) {
      if (this.handshaking.size >= this.options.maxHandshakes) return;
      const { group, address, received, onReadable, onEnd } = this.leaveLine(socket)!;
      // Destroyed but its 'close' not yet delivered: it would only hold a slot for nothing.
      if (socket.destroyed) continue;
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      // The handshake reads from the start: what was read ahead goes back first.
      if (received.length > 0) socket.unshift(received.length === 1 ? received[0] : Buffer.concat(received));
      this.handshake(socket, group, address);
    }
  }

  /** Takes a connection out of the waiting line, wherever it is in it. */
  private leaveLine(socket: Socket): WaitingConnection | undefined {
    const entry = this.waiting.get(socket);
    this.waiting.delete(socket);
    this.ready.delete(socket);
    return entry;
  }

  /**
   * Closes the connections that waited handshakeTimeout ms for a slot: their peers gave up on
   * them by now or soon will, and a handshake for a peer that is gone is wasted work.
   */
  private expireWaiting(): void {
    this.waitTimer = undefined;
    const timeout = this.options.handshakeTimeout;
    const now = Date.now();
    for (const [socket, { group, address, since, receivedBytes }] of this.waiting) {
      if (now - since < timeout) {
        this.waitTimer = setTimeout(() => this.expireWaiting(), since + timeout - now).unref();
        return;
      }
      this.leaveLine(socket);
      this.counters.connectionsRefused++;
      socket.destroy();
      const reason = receivedBytes > 0
        ? `waited ${timeout} ms for one of the proxy's ${this.options.maxHandshakes} handshake slots`
        : `sent nothing within the handshake timeout of ${timeout} ms`;
      this.refused({ kind: 'connection', code: 'ERR_TIMEOUT', reason, address, addressGroup: group });
    }
  }

  private handshake(socket: Socket, group: string, address: string): void {
    this.handshaking.add(socket);
    this.peakHandshakes = Math.max(this.peakHandshakes, this.handshaking.size);
    HopConnection.establish({
      socket,
      identity: this.identity,
      initiator: false,
      maxPayload: this.options.maxPayload,
      handshakeTimeout: this.options.handshakeTimeout,
      keepAliveInterval: this.options.keepAliveInterval,
    }).then(
      (hop) => {
        this.handshaking.delete(socket);
        this.admitWaiting();
        if (this.closing) {
          hop.close(Reason.GoingAway, SHUTTING_DOWN);
          return;
        }
        this.adopt(hop, group);
      },
      (err: RidproxyError) => {
        this.handshaking.delete(socket);
        this.admitWaiting();
        if (err.code === 'ERR_TIMEOUT') this.counters.connectionsRefused++;
        else if (!(err instanceof ConnectionClosedError)) this.counters.protocolErrors++;
        // A peer that just hangs up (a port probe) is no refusal.
        if (!(err instanceof ConnectionClosedError) || err.code === 'ERR_TIMEOUT') {
          this.refused({ kind: 'handshake', code: err.code, reason: err.message, address, addressGroup: group });
        }
      },
    );
  }

  private adopt(hop: HopConnection, group: string): void {
    const conn = newProxyConnection(hop, group, this.remote?.isMember(hop.peerRoutingId) ?? false);
    this.connections.add(conn);
    hop.on('close', (err: RidproxyError | undefined) => this.drop(conn, err));
    hop.on('goaway', () => this.unregister(conn));
    hop.start((frame) => this.route(conn, frame));
    this.watchIdle(conn);
  }

  /** A connection that neither serves nor carries VCs only holds a descriptor; it may stay a while, not forever. */
  private watchIdle(conn: ProxyConnection): void {
    // A cluster link is kept by the proxy that dialed it, which closes it when idle: closing it
    // here could race with a VC it is forwarding right now.
    const idle = conn.vcs.size === 0 && !this.registry.isRegistered(conn) && conn.hop.isOpen && !conn.member;
    if (!idle) {
      if (conn.idleTimer) clearTimeout(conn.idleTimer);
      conn.idleTimer = undefined;
      return;
    }
    if (conn.idleTimer || this.options.idleTimeout <= 0) return;
    conn.idleTimer = setTimeout(() => {
      conn.idleTimer = undefined;
      if (conn.vcs.size > 0 || this.registry.isRegistered(conn)) return;
      this.counters.connectionsRefused++;
      const reason = `idle for ${this.options.idleTimeout} ms with no VCs and no registration`;
      this.refused({ kind: 'connection', code: 'ERR_TIMEOUT', reason, ...this.peerOf(conn) });
      conn.hop.close(Reason.Timeout, reason);
    }, this.options.idleTimeout);
    conn.idleTimer.unref();
  }

  private route(conn: ProxyConnection, frame: Frame): void {
    switch (frame.type) {
      case FrameType.Data:
        this.circuits.data(conn, frame);
        return;
      case FrameType.Credit:
        this.circuits.credit(conn, frame);
        return;
      case FrameType.CreditRevoke:
        this.circuits.creditRevoke(conn, frame);
        return;
      case FrameType.CreditReturn:
        this.circuits.creditReturn(conn, frame);
        return;
      case FrameType.OpenVc:
        this.circuits.open(conn, frame);
        return;
      case FrameType.VcAccepted:
        this.circuits.accepted(conn, frame);
        return;
      case FrameType.VcRejected:
      case FrameType.CloseVc:
        this.circuits.close(conn, frame);
        return;
      case FrameType.RegisterOptions:
        conn.registerOptions = decodeRegistrationDocument(FrameType.RegisterOptions, payloadOf(frame));
        return;
      case FrameType.Register:
        this.register(conn, frame);
        return;
      case FrameType.Unregister:
        this.unregister(conn);
        return;
      case FrameType.StatusRequest: {
        const refusal = statusRefusal(this.options, conn, frame, this.endpoint);
        if (refusal === undefined) {
          sendStatus(conn, this.report());
        } else {
          sendStatusRefusal(conn, refusal);
          this.refused({ kind: 'status', code: 'ERR_UNAUTHORIZED', reason: refusal, ...this.peerOf(conn) });
          this.refuseToken(conn, refusal);
        }
        return;
      }
      default:
        throw new ProtocolError('ERR_PROTOCOL', `frame type ${frame.type} is not valid from a process to the proxy`);
    }
  }

  private register(conn: ProxyConnection, frame: Frame): void {
    const result = this.registry.register(conn, frame, () => this.closing !== undefined);
    if (result instanceof Promise) void result.then((settled) => this.registered(conn, settled));
    else this.registered(conn, result);
  }

  private registered(conn: ProxyConnection, result: RegisterOutcome): void {
    if (result.outcome === 'abandoned') return;
    if (result.outcome === 'registered') {
      this.emit('registered', { routingId: conn.identity, address: conn.hop.peerLabel, ...(result.superseded !== undefined && { superseded: result.superseded }) });
    } else {
      this.refused({ kind: 'registration', code: codeForReason(result.reason), reason: result.message, ...this.peerOf(conn) });
      if (result.outcome === 'tokenFailed') this.refuseToken(conn, result.message);
    }
    this.watchIdle(conn);
  }

  private peerOf(conn: ProxyConnection): Pick<ProxyRefusedEvent, 'address' | 'addressGroup' | 'routingId'> {
    return { address: conn.hop.peerLabel, addressGroup: conn.group, routingId: conn.identity };
  }

  private refused(event: ProxyRefusedEvent): void {
    this.emit('refused', event);
  }

  /**
   * A failed token check ends the connection, so each guess costs a new connection and
   * handshake, and an address group that keeps guessing is locked out for a while.
   */
  private refuseToken(conn: ProxyConnection, message: string): void {
    this.admission.tokenFailed(conn.group);
    conn.hop.close(Reason.Unauthorized, message);
  }

  private unregister(conn: ProxyConnection): void {
    this.withdraw(conn, 'ERR_CLOSED', 'the server unregistered or is going away');
    this.closeIfIdle(conn);
    this.watchIdle(conn);
  }

  /** A connection told to go away (either direction) is closed once its last VC is gone. */
  private closeIfIdle(conn: ProxyConnection): void {
    if (conn.vcs.size > 0 || !conn.hop.isOpen) return;
    if (conn.hop.localGoAway || conn.hop.peerGoAway) conn.hop.close(Reason.GoingAway, 'going away');
  }

  private drop(conn: ProxyConnection, err: RidproxyError | undefined): void {
    if (!this.connections.delete(conn)) return;
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    if (err instanceof ProtocolError) this.counters.protocolErrors++;
    this.withdraw(conn, err?.code ?? 'ERR_CLOSED', err?.message ?? 'the connection closed');
    this.circuits.dropConnection(conn, err);
  }

  /** Withdraws `conn`'s registration, if it holds one, and reports why it ended. */
  private withdraw(conn: ProxyConnection, code: RidproxyError['code'], reason: string): void {
    if (!this.registry.isRegistered(conn)) return;
    this.registry.unregister(conn);
    this.emit('unregistered', { routingId: conn.identity, address: conn.hop.peerLabel, code, reason, bytesSent: conn.bytesIn, bytesReceived: conn.bytesOut });
  }
}
