import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { ConnectionClosedError, ProtocolError, Reason, type RidproxyError } from '../errors.js';
import { Endpoint } from '../id/endpoint.js';
import { Identity } from '../id/identity.js';
import type { RoutingId } from '../id/routing-id.js';
import { CONTROL_SLACK, DEFAULT_HANDSHAKE_TIMEOUT, HopConnection } from '../hop/connection.js';
import { TokenPurpose } from '../hop/handshake.js';
import {
  DEFAULT_MAX_PAYLOAD,
  FrameType,
  decodeCredit,
  decodeOpenVc,
  decodeRegister,
  decodeStatusRequest,
  decodeVcAccepted,
  encodeOpenVc,
  encodeReason,
  encodeStatusResponse,
  payloadOf,
  type Frame,
} from '../wire/index.js';
import { DEFAULT_IPV6_PREFIX_LENGTH, KeyedCounter, addressGroup } from './admission.js';

export interface ProxyOptions {
  /** Interface to listen on. Default 127.0.0.1: exposing a proxy publicly is a deliberate choice. */
  host?: string;
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** The proxy's own identity; generated in memory when absent. */
  identity?: Identity;
  /** Largest frame payload accepted from a peer. */
  maxPayload?: number;
  /** Milliseconds a new connection has to complete the handshake. */
  handshakeTimeout?: number;
  /** Milliseconds between keepalive pings on hop connections; 0 disables. */
  keepAliveInterval?: number;
  /** Largest receive window a VC end may announce; bounds what one VC can make the proxy hold. */
  maxVcWindow?: number;
  /** Bytes the proxy may commit to VC windows in total; beyond it new VCs are refused (Reason.Limit). */
  bufferBudget?: number;
  /** Bytes the proxy may commit to the VCs one hop connection opens. */
  connectionBufferBudget?: number;
  /** Bytes the proxy may commit to the VCs opened by one identity (routing ID), over all its connections. */
  identityBufferBudget?: number;
  /** Bytes the proxy may commit to the VCs opened from one source address group (an IPv4 address, an IPv6 /64). */
  addressBufferBudget?: number;
  /** Prefix length by which IPv6 sources are grouped for per-address limits. Default 64. */
  ipv6PrefixLength?: number;
  /** Milliseconds a VC may wait for the destination to accept it before it is refused and its reservation released. */
  vcOpenTimeout?: number;
  /** When set, Register frames must carry this token's MAC. */
  registrationToken?: string;
  /** When set, OpenVc frames must carry this token's MAC. */
  dialToken?: string;
  /**
   * When set, status requests must carry this token's MAC. When any other token is set and this
   * one is not, the proxy answers no status request; with no token at all it answers anyone.
   */
  statusToken?: string;
  /** When set, only these routing IDs (32-hex strings) may register. */
  registrationAllowList?: ReadonlySet<string>;
  /** Hop connections (including ones still in their handshake) the proxy holds at once. */
  maxConnections?: number;
  /** Hop connections from one source address group (an IPv4 address, an IPv6 /64). */
  maxConnectionsPerAddress?: number;
  /** Registered routing IDs. */
  maxRegistrations?: number;
  /** Open VCs one hop connection may have opened. */
  maxVcsPerConnection?: number;
  /** Milliseconds a connection with no VCs and no registration may stay open. 0 disables. */
  idleTimeout?: number;
}

export const DEFAULT_MAX_VC_WINDOW = 1 << 20;
export const DEFAULT_MAX_CONNECTIONS = 10_000;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 1_000;
export const DEFAULT_MAX_REGISTRATIONS = 10_000;
export const DEFAULT_MAX_VCS_PER_CONNECTION = 1_000;
export const DEFAULT_IDLE_TIMEOUT = 60_000;
export const DEFAULT_VC_OPEN_TIMEOUT = 10_000;
export const DEFAULT_BUFFER_BUDGET = 1 << 30;
export const DEFAULT_CONNECTION_BUFFER_BUDGET = 256 << 20;
export const DEFAULT_IDENTITY_BUFFER_BUDGET = 256 << 20;
export const DEFAULT_ADDRESS_BUFFER_BUDGET = 512 << 20;
/** Servers listed in one status reply; the rest are counted, so the reply stays well under a frame. */
export const MAX_STATUS_SERVERS = 1000;

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
  bytesForwarded: number;
  vcsRejected: number;
  protocolErrors: number;
  /** Connections refused or dropped by a limit (count, per address, handshake or idle time). */
  connectionsRefused: number;
  /** Frames for VCs that had just closed, dropped as the protocol allows. */
  staleFrames: number;
}

export interface ProxyServerReport {
  routingId: string;
  /** Where the server's hop connection comes from. */
  address: string;
  vcs: number;
  /** Payload bytes the server sent through the proxy. */
  bytesIn: number;
  /** Payload bytes the proxy delivered to the server. */
  bytesOut: number;
  connectedSeconds: number;
}

export interface ProxyStatusReport {
  endpoint: string;
  routingId: string;
  uptimeSeconds: number;
  connections: number;
  vcs: number;
  bytesForwarded: number;
  bufferedBytes: number;
  /** Registered servers: all of them in `registrations`, at most MAX_STATUS_SERVERS in `servers`. */
  registrations: number;
  servers: ProxyServerReport[];
}

/** One direction's half of a routed VC as seen from one hop connection. */
interface VcSide {
  route: VcRoute;
  /** True for the side that sent OpenVc. */
  opener: boolean;
}

interface VcRoute {
  opener: ProxyConnection;
  openerVci: number;
  acceptor: ProxyConnection;
  acceptorVci: number;
  accepted: boolean;
  /** Bytes the opener may still send toward the acceptor (the acceptor's unreturned credit). */
  creditToAcceptor: number;
  /** Bytes the acceptor may still send toward the opener. */
  creditToOpener: number;
  openerWindow: number;
  acceptorWindow: number;
  reserved: number;
  /** Until the acceptor answers: refuses the VC when the destination never does. */
  openTimer: NodeJS.Timeout | undefined;
}

interface ProxyConnection {
  hop: HopConnection;
  /** The proven routing ID, as text: the key of per-identity budgets. */
  identity: string;
  /** The source address group: the key of per-address limits. */
  group: string;
  vcs: Map<number, VcSide>;
  /** Window bytes reserved for every VC on this connection, whoever opened it: what may queue toward it. */
  reserved: number;
  /** The part of `reserved` for VCs this connection opened: what its budget limits. */
  openedReserved: number;
  connectedAt: number;
  /** Payload bytes received from this connection's process and forwarded. */
  bytesIn: number;
  /** Payload bytes forwarded to this connection's process. */
  bytesOut: number;
  idleTimer: NodeJS.Timeout | undefined;
  /** VC opens refused for a limit since this connection last got one through. */
  limitRefusals: number;
}

/**
 * The frame router: a routing table (RID -> hop connection) and a VC table pairing
 * (connection, vci) ends. It rewrites VC ids and forwards payload buffers as they arrived;
 * it never reads them. Credit is tracked per VC direction so no peer can make it hold more
 * than the windows it committed to, and those commitments are bounded by the budgets.
 */
export class Proxy {
  readonly identity: Identity;
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;

  private readonly server: Server;
  private readonly options: Required<Omit<ProxyOptions, 'identity' | 'registrationToken' | 'dialToken' | 'statusToken' | 'registrationAllowList' | 'host' | 'port'>> &
    Pick<ProxyOptions, 'registrationToken' | 'dialToken' | 'statusToken' | 'registrationAllowList'>;
  private readonly connections = new Set<ProxyConnection>();
  private readonly handshaking = new Set<Socket>();
  private readonly routes = new Map<string, ProxyConnection>();
  private reserved = 0;
  private counters = { bytesForwarded: 0, vcsRejected: 0, protocolErrors: 0, staleFrames: 0, peakConnectionBufferedBytes: 0, connectionsRefused: 0 };
  private readonly connectionsByGroup = new KeyedCounter();
  private readonly reservedByIdentity = new KeyedCounter();
  private readonly reservedByGroup = new KeyedCounter();
  private closing: Promise<void> | undefined;
  private readonly startedAt = Date.now();

  private constructor(server: Server, identity: Identity, host: string, port: number, options: ProxyOptions) {
    this.server = server;
    this.identity = identity;
    this.host = host;
    this.port = port;
    this.endpoint = new Endpoint(host, port, identity.routingId).toString();
    this.options = {
      maxPayload: options.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      handshakeTimeout: options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
      keepAliveInterval: options.keepAliveInterval ?? 15_000,
      maxVcWindow: options.maxVcWindow ?? DEFAULT_MAX_VC_WINDOW,
      bufferBudget: options.bufferBudget ?? DEFAULT_BUFFER_BUDGET,
      connectionBufferBudget: options.connectionBufferBudget ?? DEFAULT_CONNECTION_BUFFER_BUDGET,
      identityBufferBudget: options.identityBufferBudget ?? DEFAULT_IDENTITY_BUFFER_BUDGET,
      addressBufferBudget: options.addressBufferBudget ?? DEFAULT_ADDRESS_BUFFER_BUDGET,
      ipv6PrefixLength: options.ipv6PrefixLength ?? DEFAULT_IPV6_PREFIX_LENGTH,
      vcOpenTimeout: options.vcOpenTimeout ?? DEFAULT_VC_OPEN_TIMEOUT,
      registrationToken: options.registrationToken,
      dialToken: options.dialToken,
      statusToken: options.statusToken,
      registrationAllowList: options.registrationAllowList,
      maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      maxConnectionsPerAddress: options.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
      maxRegistrations: options.maxRegistrations ?? DEFAULT_MAX_REGISTRATIONS,
      maxVcsPerConnection: options.maxVcsPerConnection ?? DEFAULT_MAX_VCS_PER_CONNECTION,
      idleTimeout: options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
    };
    server.on('connection', (socket) => this.accept(socket));
    // After listening, the server reports only failed accepts (EMFILE, ENFILE): the listener lives on.
    server.on('error', () => this.counters.connectionsRefused++);
  }

  /** Starts a proxy listening on host:port (default 127.0.0.1 and a free port). */
  static async listen(options: ProxyOptions = {}): Promise<Proxy> {
    const host = options.host ?? '127.0.0.1';
    const server = createServer({ noDelay: true });
    // A deep accept queue so a burst of connections (servers reconnecting after a restart) is not dropped by the kernel.
    server.listen({ port: options.port ?? 0, host, backlog: 4096 });
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]: Error[]) => {
        throw err;
      }),
    ]);
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy server has no TCP address');
    return new Proxy(server, options.identity ?? Identity.generate(), host, address.port, options);
  }

  get routingId(): RoutingId {
    return this.identity.routingId;
  }

  stats(): ProxyStats {
    let vcs = 0;
    let bufferedBytes = 0;
    for (const conn of this.connections) {
      bufferedBytes += conn.hop.bufferedBytes;
      for (const side of conn.vcs.values()) if (side.opener) vcs++;
    }
    return {
      connections: this.connections.size,
      registrations: this.routes.size,
      vcs,
      bufferedBytes,
      peakConnectionBufferedBytes: this.counters.peakConnectionBufferedBytes,
      reservedBytes: this.reserved,
      bytesForwarded: this.counters.bytesForwarded,
      vcsRejected: this.counters.vcsRejected,
      protocolErrors: this.counters.protocolErrors,
      staleFrames: this.counters.staleFrames,
      connectionsRefused: this.counters.connectionsRefused,
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
    for (const socket of this.handshaking) socket.destroy();
    for (const conn of this.connections) {
      conn.hop.goAway(Reason.GoingAway, 'the proxy is shutting down');
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
    for (const conn of this.connections) conn.hop.destroy();
    await Promise.all([...this.connections].map((conn) => conn.hop.closed));
    await serverClosed;
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const group = addressGroup(socket.remoteAddress ?? 'unknown', this.options.ipv6PrefixLength);
    if (this.handshaking.size + this.connections.size >= this.options.maxConnections || this.connectionsByGroup.get(group) >= this.options.maxConnectionsPerAddress) {
      // Refused before any parsing: a flood must cost the proxy as little as possible.
      this.counters.connectionsRefused++;
      socket.destroy();
      return;
    }
    this.connectionsByGroup.add(group, 1);
    socket.once('close', () => this.connectionsByGroup.add(group, -1));
    this.handshaking.add(socket);
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
        if (this.closing) {
          hop.close(Reason.GoingAway, 'the proxy is shutting down');
          return;
        }
        this.adopt(hop, group);
      },
      (err: RidproxyError) => {
        this.handshaking.delete(socket);
        if (err.code === 'ERR_TIMEOUT') this.counters.connectionsRefused++;
        else if (!(err instanceof ConnectionClosedError)) this.counters.protocolErrors++;
      },
    );
  }

  private adopt(hop: HopConnection, group: string): void {
    const conn: ProxyConnection = {
      hop,
      identity: hop.peerRoutingId.toString(),
      group,
      vcs: new Map(),
      reserved: 0,
      openedReserved: 0,
      connectedAt: Date.now(),
      bytesIn: 0,
      bytesOut: 0,
      idleTimer: undefined,
      limitRefusals: 0,
    };
    this.connections.add(conn);
    hop.on('close', (err: RidproxyError | undefined) => this.drop(conn, err));
    hop.on('goaway', () => this.unregister(conn));
    hop.start((frame) => this.route(conn, frame));
    this.watchIdle(conn);
  }

  private isRegistered(conn: ProxyConnection): boolean {
    return this.routes.get(conn.hop.peerRoutingId.toString()) === conn;
  }

  /** A connection that neither serves nor carries VCs only holds a descriptor; it may stay a while, not forever. */
  private watchIdle(conn: ProxyConnection): void {
    const idle = conn.vcs.size === 0 && !this.isRegistered(conn) && conn.hop.isOpen;
    if (!idle) {
      if (conn.idleTimer) clearTimeout(conn.idleTimer);
      conn.idleTimer = undefined;
      return;
    }
    if (conn.idleTimer || this.options.idleTimeout <= 0) return;
    conn.idleTimer = setTimeout(() => {
      conn.idleTimer = undefined;
      if (conn.vcs.size > 0 || this.isRegistered(conn)) return;
      this.counters.connectionsRefused++;
      conn.hop.close(Reason.Timeout, `idle for ${this.options.idleTimeout} ms with no VCs and no registration`);
    }, this.options.idleTimeout);
    conn.idleTimer.unref();
  }

  private route(conn: ProxyConnection, frame: Frame): void {
    switch (frame.type) {
      case FrameType.Data:
        this.forwardData(conn, frame);
        return;
      case FrameType.Credit:
        this.forwardCredit(conn, frame);
        return;
      case FrameType.OpenVc:
        this.openVc(conn, frame);
        return;
      case FrameType.VcAccepted:
        this.vcAccepted(conn, frame);
        return;
      case FrameType.VcRejected:
      case FrameType.CloseVc:
        this.forwardClose(conn, frame);
        return;
      case FrameType.Register:
        this.register(conn, frame);
        return;
      case FrameType.Unregister:
        this.unregister(conn);
        return;
      case FrameType.StatusRequest:
        this.answerStatus(conn, frame);
        return;
      default:
        throw new ProtocolError('ERR_PROTOCOL', `frame type ${frame.type} is not valid from a process to the proxy`);
    }
  }

  /** What `proxy status` shows: registered servers and traffic. Withheld from callers without the token, when one is set. */
  report(): ProxyStatusReport {
    const now = Date.now();
    const servers: ProxyServerReport[] = [];
    for (const [routingId, conn] of this.routes) {
      if (servers.length === MAX_STATUS_SERVERS) break;
      servers.push({
        routingId,
        address: conn.hop.peerLabel,
        vcs: conn.vcs.size,
        bytesIn: conn.bytesIn,
        bytesOut: conn.bytesOut,
        connectedSeconds: Math.round((now - conn.connectedAt) / 1000),
      });
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
      registrations: this.routes.size,
      servers,
    };
  }

  private answerStatus(conn: ProxyConnection, frame: Frame): void {
    const mac = decodeStatusRequest(payloadOf(frame));
    const { statusToken, registrationToken, dialToken } = this.options;
    const refusal =
      statusToken !== undefined
        ? conn.hop.tokenMatches(TokenPurpose.Status, 0, statusToken, mac)
          ? undefined
          : `proxy ${this.endpoint} shows its status only to callers presenting its status token`
        : registrationToken !== undefined || dialToken !== undefined
          ? `proxy ${this.endpoint} has tokens but no status token: its status is off`
          : undefined;
    if (refusal !== undefined) {
      conn.hop.send(FrameType.StatusResponse, 0, encodeStatusResponse({ error: { reason: Reason.Unauthorized, message: refusal } }));
      this.refuseToken(conn, refusal);
      return;
    }
    conn.hop.send(FrameType.StatusResponse, 0, encodeStatusResponse({ status: this.report() }));
  }

  /** A failed token check ends the connection: each guess then costs a new connection and handshake. */
  private refuseToken(conn: ProxyConnection, message: string): void {
    conn.hop.close(Reason.Unauthorized, message);
  }

  private register(conn: ProxyConnection, frame: Frame): void {
    const { hop } = conn;
    const token = this.options.registrationToken;
    const mac = decodeRegister(payloadOf(frame));
    if (token !== undefined && !hop.tokenMatches(TokenPurpose.Register, 0, token, mac)) {
      const message = `proxy ${this.endpoint} requires a valid registration token`;
      hop.send(FrameType.RegisterError, 0, encodeReason(Reason.Unauthorized, message));
      this.refuseToken(conn, message);
      return;
    }
    if (this.closing || hop.localGoAway) {
      hop.send(FrameType.RegisterError, 0, encodeReason(Reason.GoingAway, 'the proxy is shutting down'));
      return;
    }
    const key = hop.peerRoutingId.toString();
    const allowed = this.options.registrationAllowList;
    if (allowed !== undefined && !allowed.has(key)) {
      hop.send(FrameType.RegisterError, 0, encodeReason(Reason.Unauthorized, `routing id ${key} is not on the allow-list of proxy ${this.endpoint}`));
      return;
    }
    const previous = this.routes.get(key);
    if (previous === undefined && this.routes.size >= this.options.maxRegistrations) {
      hop.send(FrameType.RegisterError, 0, encodeReason(Reason.Limit, `proxy ${this.endpoint} has reached its limit of ${this.options.maxRegistrations} registered servers`));
      return;
    }
    if (previous !== undefined && previous !== conn) {
      previous.hop.close(Reason.Superseded, `routing id ${key} was registered again from another connection (${hop.peerLabel})`);
    }
    this.routes.set(key, conn);
    this.watchIdle(conn);
    hop.send(FrameType.RegisterOk, 0);
  }

  private unregister(conn: ProxyConnection): void {
    const key = conn.hop.peerRoutingId.toString();
    if (this.routes.get(key) === conn) this.routes.delete(key);
    this.closeIfIdle(conn);
    this.watchIdle(conn);
  }

  private openVc(conn: ProxyConnection, frame: Frame): void {
    const { hop } = conn;
    const vci = frame.vci;
    if (!hop.notePeerVci(vci)) {
      throw new ProtocolError('ERR_PROTOCOL', `OpenVc reuses or misallocates VC id ${vci}`);
    }
    const payload = payloadOf(frame);
    const open = decodeOpenVc(payload);
    if (!open.src.equals(hop.peerRoutingId) || !open.srcPublicKey.equals(hop.peerPublicKey)) {
      throw new ProtocolError('ERR_PROTOCOL', `OpenVc claims source ${open.src}, but this connection proved routing id ${hop.peerRoutingId}`);
    }
    const reject = (reason: Reason, message: string): void => {
      this.counters.vcsRejected++;
      hop.send(FrameType.VcRejected, vci, encodeReason(reason, message));
    };
    if (this.closing || hop.localGoAway) {
      reject(Reason.GoingAway, `proxy ${this.endpoint} is shutting down`);
      return;
    }
    const dialToken = this.options.dialToken;
    if (dialToken !== undefined && !hop.tokenMatches(TokenPurpose.Dial, vci, dialToken, open.tokenMac)) {
      const message = `proxy ${this.endpoint} requires a valid dial token`;
      reject(Reason.Unauthorized, message);
      this.refuseToken(conn, message);
      return;
    }
    if (open.window === 0 || open.window > this.options.maxVcWindow) {
      reject(Reason.Limit, `VC window ${open.window} is outside 1-${this.options.maxVcWindow} bytes allowed by proxy ${this.endpoint}`);
      return;
    }
    const target = this.routes.get(open.dst.toString());
    if (target === undefined || !target.hop.isOpen) {
      reject(Reason.UnknownDestination, `no server with routing id ${open.dst} is registered on proxy ${this.endpoint}`);
      return;
    }
    if (target.hop.peerGoAway) {
      reject(Reason.GoingAway, `server ${open.dst} is going away from proxy ${this.endpoint}`);
      return;
    }
    const limit = this.options.maxVcsPerConnection;
    // Only the opener's count: a server carries VCs from many clients, and one of them must not use up its share.
    if (this.openedBy(conn) >= limit) {
      // A peer that keeps opening after being told is flooding, not racing: cut it off.
      if (++conn.limitRefusals > limit) {
        throw new ProtocolError('ERR_PROTOCOL', `${hop.peerLabel} kept opening VCs after ${limit} refusals for the limit of ${limit} VCs per connection`);
      }
      reject(Reason.Limit, `proxy ${this.endpoint} allows at most ${limit} VCs per connection`);
      return;
    }
    conn.limitRefusals = 0;
    // Reserve as if the acceptor's window will match the opener's; VcAccepted settles the real figure.
    const reserve = 2 * open.window;
    const short = this.budgetShortfall(conn, reserve);
    if (short !== undefined) {
      reject(Reason.Limit, `proxy ${this.endpoint} has no buffer budget left for another VC from this ${short}`);
      return;
    }
    const route: VcRoute = {
      opener: conn,
      openerVci: vci,
      acceptor: target,
      acceptorVci: target.hop.allocateVci(),
      accepted: false,
      creditToAcceptor: 0,
      creditToOpener: open.window,
      openerWindow: open.window,
      acceptorWindow: 0,
      reserved: 0,
      openTimer: undefined,
    };
    this.adjustReservation(route, reserve);
    conn.vcs.set(vci, { route, opener: true });
    target.vcs.set(route.acceptorVci, { route, opener: false });
    this.watchIdle(conn);
    route.openTimer = setTimeout(() => {
      route.openTimer = undefined;
      this.closeRoute(route, Reason.Timeout, `server ${open.dst} did not answer the VC within ${this.options.vcOpenTimeout} ms`);
    }, this.options.vcOpenTimeout);
    route.openTimer.unref();
    // Rebuilt without the token MAC: a server has no business with the dial token.
    target.hop.send(FrameType.OpenVc, route.acceptorVci, encodeOpenVc({ dst: open.dst, src: open.src, srcPublicKey: open.srcPublicKey, window: open.window }));
  }

  /** VCs this connection opened (it may also carry VCs others opened to it). */
  private openedBy(conn: ProxyConnection): number {
    let opened = 0;
    for (const side of conn.vcs.values()) if (side.opener) opened++;
    return opened;
  }

  private vcAccepted(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    if (side.opener || route.accepted) {
      throw new ProtocolError('ERR_PROTOCOL', `VcAccepted for VC id ${frame.vci}, which is not awaiting acceptance from this side`);
    }
    const { window, publicKey } = decodeVcAccepted(payloadOf(frame));
    if (!publicKey.equals(conn.hop.peerPublicKey)) {
      throw new ProtocolError('ERR_PROTOCOL', `VcAccepted carries a public key other than the one ${conn.hop.peerLabel} proved`);
    }
    if (window === 0 || window > this.options.maxVcWindow) {
      this.closeRoute(route, Reason.Limit, `VC window ${window} is outside 1-${this.options.maxVcWindow} bytes allowed by proxy ${this.endpoint}`);
      return;
    }
    const growth = route.openerWindow + window - route.reserved;
    if (growth > 0 && this.budgetShortfall(route.opener, growth) !== undefined) {
      this.closeRoute(route, Reason.Limit, `proxy ${this.endpoint} has no buffer budget left for a ${window}-byte VC window`);
      return;
    }
    route.accepted = true;
    clearTimeout(route.openTimer);
    route.openTimer = undefined;
    route.acceptorWindow = window;
    route.creditToAcceptor = window;
    this.adjustReservation(route, route.openerWindow + window);
    route.opener.hop.send(FrameType.VcAccepted, route.openerVci, frame.parts);
  }

  private forwardData(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    const length = frame.length;
    if (side.opener) {
      if (length > route.creditToAcceptor) throw this.overrun(conn, route.creditToAcceptor, length);
      route.creditToAcceptor -= length;
    } else {
      if (length > route.creditToOpener) throw this.overrun(conn, route.creditToOpener, length);
      route.creditToOpener -= length;
    }
    const peer = side.opener ? route.acceptor : route.opener;
    peer.hop.send(FrameType.Data, side.opener ? route.acceptorVci : route.openerVci, frame.parts);
    this.counters.bytesForwarded += length;
    conn.bytesIn += length;
    peer.bytesOut += length;
    const buffered = peer.hop.bufferedBytes;
    if (buffered > this.counters.peakConnectionBufferedBytes) this.counters.peakConnectionBufferedBytes = buffered;
  }

  private forwardCredit(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    const amount = decodeCredit(payloadOf(frame));
    // Credit flows from the receiver: the opener's Credit lets the acceptor send more, and vice versa.
    if (side.opener) {
      if (route.creditToOpener + amount > route.openerWindow) throw this.creditOverflow(conn, route.openerWindow);
      route.creditToOpener += amount;
      route.acceptor.hop.send(FrameType.Credit, route.acceptorVci, frame.parts);
    } else {
      if (route.creditToAcceptor + amount > route.acceptorWindow) throw this.creditOverflow(conn, route.acceptorWindow);
      route.creditToAcceptor += amount;
      route.opener.hop.send(FrameType.Credit, route.openerVci, frame.parts);
    }
  }

  private forwardClose(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    if (frame.type === FrameType.VcRejected && (side.opener || route.accepted)) {
      throw new ProtocolError('ERR_PROTOCOL', `VcRejected for VC id ${frame.vci}, which is not awaiting acceptance from this side`);
    }
    const peer = side.opener ? route.acceptor : route.opener;
    const type = frame.type === FrameType.CloseVc && !side.opener && !route.accepted ? FrameType.VcRejected : frame.type;
    peer.hop.send(type, side.opener ? route.acceptorVci : route.openerVci, frame.parts);
    if (frame.type === FrameType.VcRejected) this.counters.vcsRejected++;
    this.forget(route);
  }

  /** The VC a frame belongs to; undefined for a frame that raced with the VC's close (dropped). */
  private sideOf(conn: ProxyConnection, vci: number): VcSide | undefined {
    const side = conn.vcs.get(vci);
    if (side !== undefined) return side;
    if (conn.hop.wasAllocated(vci)) {
      this.counters.staleFrames++;
      return undefined;
    }
    throw new ProtocolError('ERR_PROTOCOL', `frame for unknown VC id ${vci}`);
  }

  private overrun(conn: ProxyConnection, credit: number, length: number): ProtocolError {
    return new ProtocolError('ERR_PROTOCOL', `${conn.hop.peerLabel} sent a ${length}-byte Data frame with only ${credit} bytes of credit`);
  }

  private creditOverflow(conn: ProxyConnection, window: number): ProtocolError {
    return new ProtocolError('ERR_PROTOCOL', `${conn.hop.peerLabel} granted credit beyond its announced window of ${window} bytes`);
  }

  /** Closes a VC on both sides with a reason (e.g. a limit the acceptor broke). */
  private closeRoute(route: VcRoute, reason: Reason, message: string): void {
    const payload = encodeReason(reason, message);
    route.opener.hop.send(route.accepted ? FrameType.CloseVc : FrameType.VcRejected, route.openerVci, payload);
    route.acceptor.hop.send(FrameType.CloseVc, route.acceptorVci, payload);
    this.forget(route);
  }

  private forget(route: VcRoute): void {
    clearTimeout(route.openTimer);
    route.opener.vcs.delete(route.openerVci);
    route.acceptor.vcs.delete(route.acceptorVci);
    this.adjustReservation(route, 0);
    for (const conn of [route.opener, route.acceptor]) {
      this.closeIfIdle(conn);
      this.watchIdle(conn);
    }
  }

  /**
   * Which budget `extra` more bytes of windows for a VC opened by `opener` would exceed: the
   * global one, or the share of its connection, identity or address group; undefined when all
   * fit. Reservations are charged to the opener, so one peer cannot spend another's share,
   * whatever number of VCs it opens or connections it makes.
   */
  private budgetShortfall(opener: ProxyConnection, extra: number): string | undefined {
    const o = this.options;
    if (opener.openedReserved + extra > o.connectionBufferBudget) return 'connection';
    if (this.reservedByIdentity.get(opener.identity) + extra > o.identityBufferBudget) return 'routing id';
    if (this.reservedByGroup.get(opener.group) + extra > o.addressBufferBudget) return 'address';
    if (this.reserved + extra > o.bufferBudget) return 'proxy';
    return undefined;
  }

  private adjustReservation(route: VcRoute, amount: number): void {
    const delta = amount - route.reserved;
    route.reserved = amount;
    this.reserved += delta;
    this.reservedByIdentity.add(route.opener.identity, delta);
    this.reservedByGroup.add(route.opener.group, delta);
    route.opener.openedReserved += delta;
    for (const conn of route.opener === route.acceptor ? [route.opener] : [route.opener, route.acceptor]) {
      conn.reserved += delta;
      // Credit lets the VCs of a connection queue up to their windows toward it; more than that
      // (and room for control replies) unread means the peer stopped reading.
      conn.hop.outputLimit = CONTROL_SLACK + conn.reserved;
    }
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
    const key = conn.hop.peerRoutingId.toString();
    if (this.routes.get(key) === conn) this.routes.delete(key);
    const why = err?.code === 'ERR_SUPERSEDED' ? 'was superseded by a newer connection' : 'was lost';
    for (const { route, opener } of conn.vcs.values()) {
      const role = opener ? 'client' : 'server';
      const message = `${role} connection of ${conn.hop.peerRoutingId} to proxy ${this.endpoint} ${why}`;
      const payload = encodeReason(Reason.ConnectionLost, message);
      if (opener) route.acceptor.hop.send(FrameType.CloseVc, route.acceptorVci, payload);
      else route.opener.hop.send(route.accepted ? FrameType.CloseVc : FrameType.VcRejected, route.openerVci, payload);
      this.forget(route);
    }
  }
}
