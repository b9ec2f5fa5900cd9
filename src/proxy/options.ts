import { DEFAULT_HANDSHAKE_TIMEOUT } from '../hop/connection.js';
import type { Identity } from '../id/identity.js';
import { DEFAULT_MAX_PAYLOAD } from '../wire/index.js';
import { InvalidArgumentError, type Reason } from '../errors.js';
import { DEFAULT_IPV6_PREFIX_LENGTH } from './admission.js';

export { DEFAULT_IPV6_PREFIX_LENGTH };

/** What a RegistrationHook decides: the RegisterOk document to send, or the refusal. */
export type RegistrationVerdict = { document: Record<string, unknown> } | { refused: { reason: Reason; message: string } };

/**
 * Consulted on every registration that passed the proxy's own checks, with the server's
 * RegisterOptions document (empty when it sent none); the web ingress's name directory is one,
 * its public TCP ports another (compose them with composeRegistrationHooks).
 *
 * `registration` stands for this one registration (its connection) until `released` is called
 * with it: when it ends, when a newer registration of the same routing id replaces it, or when it
 * never took effect although the hook accepted it (its connection closed while an asynchronous
 * verdict was pending, or a hook composed after this one refused). Two registrations of one
 * routing id can be held at once while the newer one is being decided.
 */
export interface RegistrationHook {
  register(routingId: string, options: Record<string, unknown>, registration: object): RegistrationVerdict | Promise<RegistrationVerdict>;
  released?(routingId: string, registration: object): void;
}

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
  /**
   * Largest window the proxy grants the sender of one direction of a VC. Credit is hop by hop:
   * each window starts at 256 KiB and grows with the sender's path while the budgets below have
   * room, so this bounds what one VC direction can make the proxy hold. Default 16 MiB.
   */
  maxVcWindow?: number;
  /** Bytes the proxy may commit to VC windows in total; beyond it new VCs are refused (Reason.Limit) and windows stop growing. */
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
  /** Hop connections (including ones still in their handshake or waiting for one) the proxy holds at once. */
  maxConnections?: number;
  /**
   * Hop handshakes the proxy works on at once. Each costs about a millisecond of CPU; answering
   * every accepted connection at once (servers reconnecting to a restarted proxy) makes them all
   * slow together until they all time out, so beyond this many new connections wait their turn.
   * Default 256: a slot is held for a round trip to the peer, and 64 left the proxy's CPU idle
   * while servers on loaded machines were slow to answer (bench/RESULTS.md, "Reconnect storm").
   */
  maxHandshakes?: number;
  /**
   * Connections that may wait for a handshake slot (maxHandshakes) at once; one more is closed at
   * once, as a refusal. A connection that waited handshakeTimeout ms is closed too: its peer has
   * likely given up. Default 10,000.
   */
  maxQueuedHandshakes?: number;
  /** Hop connections from one source address group (an IPv4 address, an IPv6 /64). */
  maxConnectionsPerAddress?: number;
  /** Failed token checks from one address group within a minute after which it is refused for the rest of that minute. */
  maxTokenFailures?: number;
  /** Registered routing IDs. */
  maxRegistrations?: number;
  /** Open VCs one hop connection may have opened. */
  maxVcsPerConnection?: number;
  /** Milliseconds a connection with no VCs and no registration may stay open. 0 disables. */
  idleTimeout?: number;
  /** Decides on registrations past the proxy's checks, and what RegisterOk tells the server. */
  registrationHook?: RegistrationHook;
}

export const DEFAULT_MAX_VC_WINDOW = 16 << 20;
export const DEFAULT_MAX_CONNECTIONS = 10_000;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 1_000;
export const DEFAULT_MAX_HANDSHAKES = 256;
export const DEFAULT_MAX_QUEUED_HANDSHAKES = 10_000;
export const DEFAULT_MAX_REGISTRATIONS = 10_000;
export const DEFAULT_MAX_VCS_PER_CONNECTION = 1_000;
export const DEFAULT_IDLE_TIMEOUT = 60_000;
export const DEFAULT_MAX_TOKEN_FAILURES = 10;
export const DEFAULT_VC_OPEN_TIMEOUT = 10_000;
export const DEFAULT_BUFFER_BUDGET = 1 << 30;
export const DEFAULT_CONNECTION_BUFFER_BUDGET = 256 << 20;
export const DEFAULT_IDENTITY_BUFFER_BUDGET = 256 << 20;
export const DEFAULT_ADDRESS_BUFFER_BUDGET = 512 << 20;

/** The admission settings a running proxy can change (Proxy.reload), without dropping anything. */
export type ReloadableProxyOptions = Pick<ProxyOptions, 'registrationToken' | 'dialToken' | 'statusToken' | 'registrationAllowList'>;

/** The options with every default filled in; tokens and the allow-list stay optional (absent means off). */
export type ResolvedProxyOptions = Required<Omit<ProxyOptions, 'identity' | 'registrationToken' | 'dialToken' | 'statusToken' | 'registrationAllowList' | 'host' | 'port' | 'registrationHook'>> &
  Pick<ProxyOptions, 'registrationToken' | 'dialToken' | 'statusToken' | 'registrationAllowList' | 'registrationHook'>;

/** `value`, or `fallback` when it is absent, for a limit where 0 would refuse everything (maxHandshakes: no connection would ever be answered). */
export function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) throw new InvalidArgumentError('ERR_INVALID_OPTION', `${name} must be a positive integer, got ${value}`);
  return value;
}

export function resolveProxyOptions(options: ProxyOptions): ResolvedProxyOptions {
  const prefix = options.ipv6PrefixLength;
  if (prefix !== undefined && !(Number.isInteger(prefix) && prefix >= 1 && prefix <= 128)) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `ipv6PrefixLength must be an integer from 1 to 128, got ${prefix}`);
  }
  return {
    maxPayload: positive(options.maxPayload, DEFAULT_MAX_PAYLOAD, 'maxPayload'),
    handshakeTimeout: positive(options.handshakeTimeout, DEFAULT_HANDSHAKE_TIMEOUT, 'handshakeTimeout'),
    keepAliveInterval: options.keepAliveInterval ?? 15_000,
    maxVcWindow: positive(options.maxVcWindow, DEFAULT_MAX_VC_WINDOW, 'maxVcWindow'),
    bufferBudget: positive(options.bufferBudget, DEFAULT_BUFFER_BUDGET, 'bufferBudget'),
    connectionBufferBudget: positive(options.connectionBufferBudget, DEFAULT_CONNECTION_BUFFER_BUDGET, 'connectionBufferBudget'),
    identityBufferBudget: positive(options.identityBufferBudget, DEFAULT_IDENTITY_BUFFER_BUDGET, 'identityBufferBudget'),
    addressBufferBudget: positive(options.addressBufferBudget, DEFAULT_ADDRESS_BUFFER_BUDGET, 'addressBufferBudget'),
    ipv6PrefixLength: options.ipv6PrefixLength ?? DEFAULT_IPV6_PREFIX_LENGTH,
    vcOpenTimeout: positive(options.vcOpenTimeout, DEFAULT_VC_OPEN_TIMEOUT, 'vcOpenTimeout'),
    registrationToken: options.registrationToken,
    dialToken: options.dialToken,
    statusToken: options.statusToken,
    registrationAllowList: options.registrationAllowList,
    maxConnections: positive(options.maxConnections, DEFAULT_MAX_CONNECTIONS, 'maxConnections'),
    maxConnectionsPerAddress: positive(options.maxConnectionsPerAddress, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, 'maxConnectionsPerAddress'),
    maxHandshakes: positive(options.maxHandshakes, DEFAULT_MAX_HANDSHAKES, 'maxHandshakes'),
    maxQueuedHandshakes: options.maxQueuedHandshakes ?? DEFAULT_MAX_QUEUED_HANDSHAKES,
    maxTokenFailures: positive(options.maxTokenFailures, DEFAULT_MAX_TOKEN_FAILURES, 'maxTokenFailures'),
    maxRegistrations: positive(options.maxRegistrations, DEFAULT_MAX_REGISTRATIONS, 'maxRegistrations'),
    maxVcsPerConnection: positive(options.maxVcsPerConnection, DEFAULT_MAX_VCS_PER_CONNECTION, 'maxVcsPerConnection'),
    idleTimeout: options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
    registrationHook: options.registrationHook,
  };
}
