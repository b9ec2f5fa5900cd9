import { InvalidArgumentError } from '../errors.js';
import { DEFAULT_VC_WINDOW, MAX_VC_WINDOW } from '../hop/circuit.js';
import type { Identity } from '../id/identity.js';
import type { PeerIdentity } from '../secure/index.js';

// What a Manager can be told, with the defaults and the checks, apart from what it does.

export interface ManagerOptions {
  /** The process's identity; a fresh in-memory one when absent. */
  identity?: Identity;
  /** Receive window each VC end starts with, in bytes (default 256 KiB); it grows toward `maxVcWindow` on a long path. */
  vcWindow?: number;
  /** Largest receive window of a VC end (default and at most 16 MiB; equal to `vcWindow` for a fixed window). */
  maxVcWindow?: number;
  /**
   * Flows one VC may have open at once, both directions together (default 65,536). Opening one
   * more fails with ERR_STREAM_LIMIT; one the peer opens beyond it is reset.
   */
  maxFlowsPerVc?: number;
  /** Receive window each flow (yamux stream) starts with, in bytes (default 256 KiB); it grows toward `maxStreamWindow`. */
  streamWindow?: number;
  /** Largest receive window of a flow (default 16 MiB; equal to `streamWindow` for a fixed window). */
  maxStreamWindow?: number;
  /** Milliseconds a peer has to complete the hop handshake. */
  handshakeTimeout?: number;
  /** Milliseconds between keepalive pings on hop connections and VCs; 0 disables them. */
  keepAliveInterval?: number;
  /** Default time limit of `dial`, in milliseconds; also bounds each hop connection or VC setup that dials share. */
  dialTimeout?: number;
  /** Milliseconds a VC with no flows stays open for reuse. */
  vcIdleTimeout?: number;
  /** Milliseconds a hop connection with no VCs and no registration stays open. */
  linkIdleTimeout?: number;
  /** Incoming flows waiting for `accept`, across all VCs; past it new flows are reset. Default 1024. */
  acceptBacklog?: number;
  /**
   * Bytes that the flows waiting for `accept` on one VC may hold together, default 4 MiB. yamux
   * lets the peer send 256 KiB on each flow it opens before anyone reads it; a flow whose data
   * would pass this budget is reset (the opener sees ERR_STREAM_RESET), so a peer opening flows
   * that are never accepted cannot make this process hold more. Accepted flows do not count.
   */
  pendingAcceptBudget?: number;
  /** Flows waiting for `accept` on one VC; past it the VC's new flows are reset. Default 1024. */
  maxPendingAccept?: number;
  /**
   * Decides, after the peer proved its key end to end, whether it may reach `accept()`: it gates
   * every VC a peer opens to this process, and every flow a peer opens back on a VC this process
   * dialed. Refused VCs get ERR_UNAUTHORIZED; refused flows are reset.
   */
  authorize?: Authorize;
  /**
   * Encrypt and authenticate every VC end to end (TLS 1.3 inside the VC). Default true. Turning
   * it off lets the proxy read and alter traffic; both ends must agree. For measurement only.
   */
  encryption?: boolean;
}

/** An allow-list check on a peer authenticated end to end; return false (or throw) to refuse it. */
export type Authorize = (peer: PeerIdentity) => boolean | Promise<boolean>;

export interface DialOptions {
  signal?: AbortSignal;
  /**
   * Milliseconds this dial waits (connect, handshake, VC open). A new hop connection or VC is
   * shared by every dial that wants it and is bounded by the manager's `dialTimeout` instead.
   */
  timeout?: number;
  /** The flow does not keep an otherwise idle VC open. */
  sideChannel?: boolean;
  /**
   * The proxy's dial token, when it requires one to open VCs. It is sent only as a MAC bound to
   * the hop connection, and only to a proxy whose key the endpoint pins.
   */
  token?: string;
  /**
   * Accept whatever process answers at an endpoint that pins no key (`ridp://host:port/<rid>`
   * whose hop peer is a proxy, or no routing id at all). A token MAC sent to an impostor can be
   * attacked offline: use it only with long random tokens, or none.
   */
  allowUnpinnedProxy?: boolean;
  /** Checked against the peer's end-to-end authenticated key, on a new VC and on a reused one. */
  authorize?: Authorize;
}

export interface CloseOptions {
  /**
   * Milliseconds the open flows get to finish. close() ends this side of each flow after what was
   * written to it, and a VC closes as soon as both sides of all its flows have; one still busy
   * after this long is closed anyway, and its peer's flows fail with ERR_GOING_AWAY (not
   * ERR_CONNECTION_LOST, as on a crash). Default 5000.
   */
  drainTimeout?: number;
}

export interface AcceptOptions {
  signal?: AbortSignal;
}

export interface ProxyListenOptions {
  /** The proxy's registration token, when it requires one; sent only as a MAC bound to the hop connection. */
  token?: string;
  /**
   * Register on whatever process answers at a proxy endpoint that names no routing id. Its key
   * is not checked: an impostor could take the registration (and attack a token MAC offline).
   */
  allowUnpinnedProxy?: boolean;
  /**
   * A name to reach this process by on the proxy's web ingress: `name` asks for
   * `name.<the proxy's domain>`, which the proxy reserves for this key. A DNS label: 1-63 of
   * a-z, 0-9 and "-", not at either end. Ignored by a proxy without ingress.
   */
  hostname?: string;
  /**
   * Public TCP ports to ask the proxy for (0: any port in its range), forwarded to this process
   * while it is registered: each connection arrives as a flow from the proxy's ingress. The
   * ports it got are `ingress.tcp`; a proxy that cannot give them refuses the registration, and
   * one without public ports ignores the request (then `ingress.tcp` is empty).
   */
  publicPorts?: number[];
  signal?: AbortSignal;
  timeout?: number;
}

/** What a proxy with web ingress offers a registration (docs/protocol.md 5.5); empty lists when it has none. */
export interface IngressInfo {
  /** The host names routed to this process: the requested name, if any, and the one derived from its routing id. */
  hostnames: string[];
  /** URLs a browser can use, one per host name and ingress listener. */
  urls: string[];
  /** The public TCP ports the proxy listens on for this process, as `host:port` with the host it binds them to (0.0.0.0: every address). */
  tcp: string[];
  /** The routing id the proxy's ingress opens flows with (they begin with an origin message); absent without ingress. */
  routingId?: string;
}

export interface ListenStatus {
  /**
   * Endpoints clients can dial to reach this process; the first is the one to hand out. While it
   * listens nowhere, the one address-less endpoint `ridp:///<routing id>`: a process that only
   * dials is still reachable by peers over the VCs it opened (`dial` or `dialCached` of that
   * endpoint), as with Vanadium's Status().
   */
  endpoints: string[];
  /** This process's routing ID, listening or not. */
  routingId: string;
  /** Per proxyListen name: null while registered, the error that ended it otherwise. */
  proxyErrors: Map<string, Error | null>;
  /** Settles on the next change of this status. */
  dirty: Promise<void>;
}

/** A registration of this process's routing ID on a proxy, made by proxyListen. */
export interface ProxyRegistration {
  readonly name: string;
  /** The endpoint clients dial to reach this process through the proxy. */
  readonly endpoint: string;
  /** What the proxy's web ingress routes to this process. */
  readonly ingress: IngressInfo;
  /** Settles when the registration ends: undefined after close(), the error if the link to the proxy failed. */
  readonly closed: Promise<Error | undefined>;
  close(): void;
}

const DEFAULT_DIAL_TIMEOUT = 30_000;
const DEFAULT_VC_IDLE_TIMEOUT = 60_000;
const DEFAULT_LINK_IDLE_TIMEOUT = 30_000;
const DEFAULT_ACCEPT_BACKLOG = 1024;
export const DEFAULT_DRAIN_TIMEOUT = 5_000;
export const DEFAULT_MAX_FLOWS_PER_VC = 65_536;

/** The options with every default filled in; those left absent here mean "the layer's own default". */
export type ResolvedManagerOptions = Required<Omit<ManagerOptions, 'identity' | 'streamWindow' | 'maxStreamWindow' | 'authorize' | 'pendingAcceptBudget' | 'maxPendingAccept'>> &
  Pick<ManagerOptions, 'streamWindow' | 'maxStreamWindow' | 'authorize' | 'pendingAcceptBudget' | 'maxPendingAccept'>;

/** Fills in the defaults; throws ERR_INVALID_OPTION for a value out of range. */
export function resolveManagerOptions(options: ManagerOptions): ResolvedManagerOptions {
  const vcWindow = checkRange('vcWindow', options.vcWindow ?? DEFAULT_VC_WINDOW, 1, MAX_VC_WINDOW);
  return {
    vcWindow,
    maxVcWindow: checkRange('maxVcWindow', options.maxVcWindow ?? MAX_VC_WINDOW, vcWindow, MAX_VC_WINDOW),
    streamWindow: options.streamWindow,
    maxStreamWindow: options.maxStreamWindow,
    maxFlowsPerVc: checkRange('maxFlowsPerVc', options.maxFlowsPerVc ?? DEFAULT_MAX_FLOWS_PER_VC, 1, 2 ** 31),
    handshakeTimeout: options.handshakeTimeout ?? 10_000,
    keepAliveInterval: options.keepAliveInterval ?? 15_000,
    dialTimeout: options.dialTimeout ?? DEFAULT_DIAL_TIMEOUT,
    vcIdleTimeout: options.vcIdleTimeout ?? DEFAULT_VC_IDLE_TIMEOUT,
    linkIdleTimeout: options.linkIdleTimeout ?? DEFAULT_LINK_IDLE_TIMEOUT,
    acceptBacklog: options.acceptBacklog ?? DEFAULT_ACCEPT_BACKLOG,
    pendingAcceptBudget: checkCount('pendingAcceptBudget', options.pendingAcceptBudget),
    maxPendingAccept: checkCount('maxPendingAccept', options.maxPendingAccept),
    authorize: options.authorize,
    encryption: options.encryption ?? true,
  };
}

function checkCount(name: string, value: number | undefined): number | undefined {
  if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `Manager option ${name} must be an integer of 0 or more, got ${value}`);
  }
  return value;
}

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!(Number.isInteger(value) && value >= min && value <= max)) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `Manager option ${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}
