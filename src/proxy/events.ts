import type { ErrorCode } from '../errors.js';

// What a Proxy reports as it runs (`proxy.on(...)`): plain objects, one per registration, refusal
// and VC, never one per frame. `proxy start` logs them and counts them for --metrics.

/** A server's routing id is now registered on the proxy. */
export interface ProxyRegisteredEvent {
  routingId: string;
  /** The server's hop connection as the proxy sees it: `ip:port`. */
  address: string;
  /** The address of the connection this registration replaced (same routing id), if any. */
  superseded?: string;
}

/** A registration ended: the server unregistered, went away, lost its connection or was superseded. */
export interface ProxyUnregisteredEvent {
  routingId: string;
  address: string;
  /** Why, as an error code (`ERR_CLOSED` for an Unregister or a clean close), and the message. */
  code: ErrorCode;
  reason: string;
  /** Payload bytes the server sent and received through the proxy on that connection, as `proxy status` counts them. */
  bytesSent: number;
  bytesReceived: number;
}

/**
 * What the proxy refused:
 * - `connection`: a TCP connection, before or after its handshake (connection limits, an address
 *   locked out for wrong tokens, the line of connections waiting for a handshake slot full, or
 *   one waited in it for the handshake timeout, an idle connection timed out);
 * - `handshake`: a handshake that failed (not a ridproxy peer, a failed proof, too slow); a peer
 *   that just closes during the handshake is not counted;
 * - `registration`, `vc`, `status`: a Register, OpenVc or status request (token, allow-list, limit,
 *   unknown destination, shutting down).
 */
export type ProxyRefusalKind = 'connection' | 'handshake' | 'registration' | 'vc' | 'status';

export interface ProxyRefusedEvent {
  kind: ProxyRefusalKind;
  /** The reason as an error code, as the peer's error will carry it (`ERR_UNKNOWN_DESTINATION`, `ERR_UNAUTHORIZED`, `ERR_LIMIT`, ...). */
  code: ErrorCode;
  /** The message, as sent to the peer where one is. */
  reason: string;
  /** The peer: `ip:port`. */
  address: string;
  /** The source address group the per-address limits count under (an IPv4 address, an IPv6 /64). */
  addressGroup: string;
  /** The peer's proven routing id, once its handshake is done. */
  routingId?: string;
  /** For a VC: the routing id dialed. */
  destination?: string;
  /** For a VC forwarded by another proxy of the cluster: that proxy's routing id (`routingId` is then the client's, `address` the link's). */
  clientProxy?: string;
}

/**
 * The two ends of a VC: the process that opened it (client) and the registered one it reached
 * (server). In a cluster, a VC between proxies names the far end all the same, its address being
 * the connection to the proxy it came from (`clientProxy`) or went to (`serverProxy`).
 */
export interface ProxyVcEvent {
  client: string;
  clientAddress: string;
  server: string;
  serverAddress: string;
  clientProxy?: string;
  serverProxy?: string;
}

/** The server accepted a VC: bytes may flow. */
export type ProxyVcOpenedEvent = ProxyVcEvent;

/** A VC the proxy had forwarded to its server is gone, whether or not the server had accepted it. */
export interface ProxyVcClosedEvent extends ProxyVcEvent {
  /** False when the VC ended before the server accepted it (refused by the server, timed out, a side lost). */
  accepted: boolean;
  /** Payload bytes the proxy delivered to the server and to the client on this VC. */
  bytesToServer: number;
  bytesToClient: number;
  /** Milliseconds from the OpenVc to the close. */
  durationMs: number;
  /** Why, as an error code: `ERR_CLOSED` for a clean close, `ERR_REFUSED`, `ERR_CONNECTION_LOST`, `ERR_TIMEOUT`, ... */
  code: ErrorCode;
  reason: string;
  /** Who ended it: one of its ends (its CloseVc or VcRejected, or its connection lost), or the proxy (a timeout, shutting down). */
  closedBy: 'client' | 'server' | 'proxy';
}

export interface ProxyEvents {
  registered: [event: ProxyRegisteredEvent];
  unregistered: [event: ProxyUnregisteredEvent];
  refused: [event: ProxyRefusedEvent];
  vcOpened: [event: ProxyVcOpenedEvent];
  vcClosed: [event: ProxyVcClosedEvent];
}
