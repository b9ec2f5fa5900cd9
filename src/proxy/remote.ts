import type { Reason } from '../errors.js';
import type { RoutingId } from '../id/routing-id.js';
import type { ProxyConnection } from './proxy-connection.js';

/** Where a VC to a routing id this proxy does not hold goes: a hop connection to the proxy that holds it, or why it cannot go anywhere. */
export type RemoteRoute = { connection: ProxyConnection } | { refused: { reason: Reason; message: string } };

/**
 * The proxy's one hook for routing ids it does not hold (a cluster, src/cluster, implements it;
 * `Proxy.useRemoteRoutes`). The proxy stays a router of VCs between hop connections: a VC it
 * forwards to another proxy is one more VC whose acceptor is that proxy's connection, with
 * credit, budgets and teardown as for any other.
 */
export interface RemoteRoutes {
  /**
   * Whether a hop peer that proved `peer` is a member of this proxy's cluster. A member's
   * connection may carry VCs opened by others: its OpenVc names the original opener as source
   * and needs no dial token (the first proxy checked it), its VcAccepted vouches for the
   * destination's key, and a VC it opens for a routing id not registered here is refused, never
   * forwarded again. Asked once, when the connection is established.
   */
  isMember(peer: RoutingId): boolean;
  /**
   * Finds the proxy holding `dst`, which no connection of this proxy holds, and a connection to
   * it the proxy routes (Proxy.adoptLink). `signal` aborts when the VC ends first; a rejection
   * refuses the VC as an internal error.
   */
  resolve(dst: RoutingId, signal: AbortSignal): Promise<RemoteRoute>;
}
