import type { HopConnection } from '../hop/connection.js';

// What the proxy keeps per hop connection and per routed VC, shared by the registry, the VC
// table and the proxy that owns them.

/** One direction's half of a routed VC as seen from one hop connection. */
export interface VcSide {
  route: VcRoute;
  /** True for the side that sent OpenVc. */
  opener: boolean;
}

export interface VcRoute {
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

export interface ProxyConnection {
  hop: HopConnection;
  /** The proven routing ID, as text: the key of per-identity budgets. */
  identity: string;
  /** The source address group: the key of per-address limits. */
  group: string;
  vcs: Map<number, VcSide>;
  /** VCs in `vcs` that this connection opened (the rest were opened to it). */
  opened: number;
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

export function newProxyConnection(hop: HopConnection, group: string): ProxyConnection {
  return {
    hop,
    identity: hop.peerRoutingId.toString(),
    group,
    vcs: new Map(),
    opened: 0,
    reserved: 0,
    openedReserved: 0,
    connectedAt: Date.now(),
    bytesIn: 0,
    bytesOut: 0,
    idleTimer: undefined,
    limitRefusals: 0,
  };
}

/** What the proxy counts, for `stats()`; every part of it adds to the same record. */
export interface ProxyCounters {
  bytesForwarded: number;
  vcsRejected: number;
  protocolErrors: number;
  staleFrames: number;
  peakConnectionBufferedBytes: number;
  connectionsRefused: number;
}
