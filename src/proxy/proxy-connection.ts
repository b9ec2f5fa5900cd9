import type { ReceiveWindow } from '../flow-control/receive-window.js';
import type { DrainWaiter, HopConnection } from '../hop/connection.js';

// What the proxy keeps per hop connection and per routed VC, shared by the registry, the VC
// table and the proxy that owns them.

/** One direction's half of a routed VC as seen from one hop connection. */
export interface VcSide {
  route: VcRoute;
  /** True for the side that sent OpenVc. */
  opener: boolean;
}

/**
 * One direction of a routed VC. Credit is hop by hop: the proxy grants the sending side its own
 * window and forwards as the receiving side grants credit, so what it holds for the direction
 * is the queue, never more than the window it granted.
 */
export interface VcDirection {
  route: VcRoute;
  /** True for opener to acceptor. */
  toAcceptor: boolean;
  /** Bytes the sending side may still send: granted by the proxy and not yet received. */
  senderCredit: number;
  /** Bytes the receiving side granted the proxy that it has not yet forwarded. */
  receiverCredit: number;
  /** Received from the sender, waiting for the receiver's credit or for its connection to drain. */
  queue: Buffer[];
  queued: number;
  /** What the proxy grants the sender: grows with the sender's path while the budget allows. */
  window: ReceiveWindow;
  /** A CreditRevoke is out to the sender (the window shrank while idle); its CreditReturn settles it. */
  revoking: boolean;
  /** The sender's clean CloseVc, forwarded once the queue has gone out. */
  closing: Buffer | undefined;
  /** Registered with the receiver's connection while its socket is too full for more data. */
  drainWaiter: DrainWaiter;
  /** Payload bytes forwarded to the receiver, for the VC's close event. */
  forwarded: number;
}

/**
 * Who a VC's reservation is charged to: the opener's identity always; its connection and address
 * group only when it opened the VC on its own connection. A VC forwarded by another proxy of the
 * cluster is charged to the routing id that opened it and to the proxy's budget, not to the one
 * connection that carries every VC between the two proxies (that proxy charged its opener already).
 */
export interface VcCharge {
  identity: string;
  connection: ProxyConnection | undefined;
  group: string | undefined;
}

export interface VcRoute {
  opener: ProxyConnection;
  openerVci: number;
  /**
   * The destination's connection (its server's, or the cluster link to the proxy that holds it);
   * undefined while the proxy looks for that proxy (RemoteRoutes.resolve), when no frame can
   * yet travel toward it.
   */
  acceptor: ProxyConnection | undefined;
  acceptorVci: number;
  /** The routing ids the OpenVc named: the destination, and the process that opened it (on a cluster link, not the link's peer). */
  dst: string;
  src: string;
  charge: VcCharge;
  /** Aborts the remote lookup of a VC that ends before it has an acceptor. */
  resolving: AbortController | undefined;
  accepted: boolean;
  toAcceptor: VcDirection;
  toOpener: VcDirection;
  /** Bytes charged to the budgets: for each direction, its window or what it holds and granted, whichever is more. */
  reserved: number;
  /** Until the acceptor answers: refuses the VC when the destination never does. */
  openTimer: NodeJS.Timeout | undefined;
  /** Date.now() at the OpenVc, for the VC's duration. */
  openedAt: number;
  /** Set once the route is forgotten, so that its close is reported once. */
  closed: boolean;
}

export interface ProxyConnection {
  hop: HopConnection;
  /** The peer is a proxy of this proxy's cluster (RemoteRoutes.isMember): it forwards VCs others opened. */
  member: boolean;
  /** The proven routing ID, as text: the key of per-identity budgets. */
  identity: string;
  /** The source address group: the key of per-address limits. */
  group: string;
  vcs: Map<number, VcSide>;
  /** VCs in `vcs` that this connection opened (the rest were opened to it). */
  opened: number;
  /** Window bytes reserved for the VCs this connection opened: what its budget limits. */
  openedReserved: number;
  connectedAt: number;
  /** Payload bytes received from this connection's process and forwarded. */
  bytesIn: number;
  /** Payload bytes forwarded to this connection's process. */
  bytesOut: number;
  idleTimer: NodeJS.Timeout | undefined;
  /** VC opens refused for a limit since this connection last got one through. */
  limitRefusals: number;
  /** The RegisterOptions document sent for the next Register, if any. */
  registerOptions: Record<string, unknown> | undefined;
  /** A Register is waiting for an asynchronous registration hook's verdict. */
  registering: boolean;
}

export function newProxyConnection(hop: HopConnection, group: string, member = false): ProxyConnection {
  return {
    hop,
    member,
    identity: hop.peerRoutingId.toString(),
    group,
    vcs: new Map(),
    opened: 0,
    openedReserved: 0,
    connectedAt: Date.now(),
    bytesIn: 0,
    bytesOut: 0,
    idleTimer: undefined,
    limitRefusals: 0,
    registerOptions: undefined,
    registering: false,
  };
}

/** What the proxy counts, for `stats()`; every part of it adds to the same record. */
export interface ProxyCounters {
  bytesForwarded: number;
  /** The part of bytesForwarded delivered to the VCs' acceptors (servers); the rest went to their openers. */
  bytesToServers: number;
  vcsRejected: number;
  protocolErrors: number;
  staleFrames: number;
  peakConnectionBufferedBytes: number;
  /** Bytes held in VC queues now, and the most ever held at once. */
  queuedBytes: number;
  peakQueuedBytes: number;
  connectionsRefused: number;
}
