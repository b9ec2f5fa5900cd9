import { EventEmitter } from 'node:events';
import { InvalidArgumentError, Reason } from '../errors.js';
import { formatAddress, parseAddress } from '../id/endpoint.js';
import { RoutingId } from '../id/routing-id.js';
import type { Proxy, RemoteRoute, RemoteRoutes } from '../proxy/proxy.js';
import { positive } from '../proxy/options.js';
import type { ProxyRegisteredEvent, ProxyUnregisteredEvent } from '../proxy/events.js';
import { DEFAULT_MAX_PAYLOAD } from '../wire/index.js';
import { Directory } from './directory.js';
import { PeerLinks, type LinkEvent } from './links.js';
import { decodeClaim, decodeHolder, encodeHolder, encodeJson, newer, signClaim } from './messages.js';

export interface ClusterOptions {
  /** The NATS server(s) of the directory: `nats://host:port`, one or more. */
  servers: string | string[];
  /** Routing ids (32 hex) of the cluster's proxies; this proxy's own may be listed too. Only these may forward VCs here, and VCs are forwarded only to these. */
  members: Iterable<string>;
  /** Where the other proxies reach this one (`host:port`): its listener as they see it. Default: the address it listens on, unless that is a wildcard. */
  advertise?: string;
  /** The NATS server's authorization token (nats-server --auth), if it requires one. */
  token?: string;
  /** The cluster's name: proxies on the same NATS with the same name form one cluster. Letters, digits, `-` and `_`. Default `ridproxy`. */
  name?: string;
  /** Milliseconds a lookup waits for the proxy holding a routing id to answer. Default 2000. */
  lookupTimeout?: number;
  /** Milliseconds a link to another proxy with no VC is kept open. Default 60000. */
  linkIdleTimeout?: number;
  /** Milliseconds dialing another proxy (connect and handshake) may take. Default 5000. */
  dialTimeout?: number;
}

export const DEFAULT_CLUSTER_NAME = 'ridproxy';
export const DEFAULT_LOOKUP_TIMEOUT = 2000;
export const DEFAULT_LINK_IDLE_TIMEOUT = 60_000;
export const DEFAULT_DIAL_TIMEOUT = 5000;

/** The directory became reachable or stopped being so. */
export interface ClusterDirectoryEvent {
  state: 'connected' | 'disconnected';
  detail: string;
}

/** A registration here ended because the same key registered later on another proxy of the cluster. */
export interface ClusterSupersededEvent {
  routingId: string;
  /** The proxy it registered on, and the address it connected from there. */
  proxy: string;
  address: string;
}

/** A directory message was dropped: malformed, not signed by the proxy it names, or from a proxy that is not a member. */
export interface ClusterDroppedEvent {
  routingId: string;
  reason: string;
}

export interface ClusterEvents {
  directory: [event: ClusterDirectoryEvent];
  superseded: [event: ClusterSupersededEvent];
  link: [event: LinkEvent];
  dropped: [event: ClusterDroppedEvent];
}

export interface ClusterStats {
  /** Whether the directory is reachable now. */
  connected: boolean;
  /** Routing ids this proxy holds in the directory (one subscription each). */
  held: number;
  /** Links open or being dialed to other proxies. */
  links: number;
  /** Lookups made (one per VC opened here to a routing id held elsewhere), and how they ended. */
  lookups: number;
  lookupsFound: number;
  lookupsUnknown: number;
  lookupsFailed: number;
}

interface Held {
  /** The claim's time: later than any other claim this proxy knew of for the routing id when the server registered here. */
  at: number;
  /** The server's address, as this proxy sees it. */
  address: string;
  /** Bumped by every registration, so that a claim still being prepared for an older one is dropped. */
  generation: number;
}

const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * A proxy's membership of a cluster of proxies that act as one (docs/cluster.md): servers
 * registered on any of them are reached through every one. The directory (NATS) says which
 * proxy holds a routing id; this proxy forwards a VC for a routing id it does not hold to that
 * proxy over a link (PeerLinks) and routes it like any other VC (the proxy's RemoteRoutes hook),
 * so the VC's end-to-end channel is untouched and a relaying proxy is as blind as any.
 *
 * Registrations: each routing id registered here is held in the directory (a subscription) and
 * claimed (a signed message on its subject), and a proxy holding an older registration of it
 * lets it go, with GoAway(Superseded) as on one proxy.
 */
export class Cluster extends EventEmitter<ClusterEvents> implements RemoteRoutes {
  readonly name: string;
  readonly servers: string[];
  readonly advertise: { host: string; port: number };
  /** Resolves once the directory was first reached (or the cluster closed). */
  readonly ready: Promise<void>;

  private members: Set<string>;
  private readonly self: string;
  private readonly directory: Directory;
  private readonly links: PeerLinks;
  private readonly held = new Map<string, Held>();
  private generation = 0;
  private closed = false;
  private readonly counts = { lookups: 0, lookupsFound: 0, lookupsUnknown: 0, lookupsFailed: 0 };
  private readonly onRegistered = (event: ProxyRegisteredEvent): void => this.registered(event.routingId, event.address);
  private readonly onUnregistered = (event: ProxyUnregisteredEvent): void => this.unregistered(event.routingId);

  private constructor(
    private readonly proxy: Proxy,
    options: ClusterOptions,
  ) {
    super();
    this.self = proxy.routingId.toString();
    this.name = options.name ?? DEFAULT_CLUSTER_NAME;
    if (!NAME_RE.test(this.name)) throw new InvalidArgumentError('ERR_INVALID_OPTION', `cluster name ${JSON.stringify(this.name)} must be 1-64 letters, digits, - or _`);
    this.servers = typeof options.servers === 'string' ? [options.servers] : [...options.servers];
    if (this.servers.length === 0) throw new InvalidArgumentError('ERR_INVALID_OPTION', 'a cluster needs the address of its NATS server');
    this.members = memberSet(options.members);
    this.advertise = advertised(proxy, options.advertise);
    const lookupTimeout = positive(options.lookupTimeout, DEFAULT_LOOKUP_TIMEOUT, 'lookupTimeout');
    const dialTimeout = positive(options.dialTimeout, DEFAULT_DIAL_TIMEOUT, 'dialTimeout');
    this.directory = new Directory({
      servers: this.servers,
      cluster: this.name,
      name: `ridproxy ${this.self}`,
      lookupTimeout,
      token: options.token,
      connectTimeout: Math.min(dialTimeout, 5000),
      answer: (rid) => this.answer(rid),
      message: (rid, data) => this.claimed(rid, data),
      state: (up, detail) => this.directoryState(up, detail),
    });
    this.ready = this.directory.ready;
    this.links = new PeerLinks({
      identity: proxy.identity,
      adopt: (hop) => proxy.adoptLink(hop),
      dialTimeout,
      idleTimeout: positive(options.linkIdleTimeout, DEFAULT_LINK_IDLE_TIMEOUT, 'linkIdleTimeout'),
      keepAliveInterval: 15_000,
      maxPayload: DEFAULT_MAX_PAYLOAD,
      event: (event) => this.emit('link', event),
    });
  }

  /**
   * Makes `proxy` a member of the cluster: from now on it forwards VCs for routing ids it does
   * not hold, and holds its registrations in the directory. Returns at once; the directory is
   * reached in the background (`ready`), and until then, or whenever it is unreachable, the
   * proxy serves its own registrations only.
   */
  static join(proxy: Proxy, options: ClusterOptions): Cluster {
    const cluster = new Cluster(proxy, options);
    proxy.on('registered', cluster.onRegistered);
    proxy.on('unregistered', cluster.onUnregistered);
    proxy.useRemoteRoutes(cluster);
    for (const server of proxy.servers()) cluster.registered(server.routingId, server.address);
    return cluster;
  }

  get connected(): boolean {
    return this.directory.up;
  }

  /** Replaces the member list (`proxy start` reads its file again on SIGHUP); connections established already keep what they were. */
  setMembers(members: Iterable<string>): void {
    this.members = memberSet(members);
  }

  isMember(peer: RoutingId): boolean {
    return this.members.has(peer.toString()) && peer.toString() !== this.self;
  }

  /** Resolves once the directory has everything this proxy sent it so far (its registrations' subscriptions, claims); at once while it is unreachable. */
  flush(): Promise<void> {
    return this.directory.flush();
  }

  stats(): ClusterStats {
    return { connected: this.directory.up, held: this.directory.size, links: this.links.size, ...this.counts };
  }

  /** Leaves the cluster: the directory forgets what this proxy held, links close, and the proxy goes back to routing its own registrations only. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.proxy.off('registered', this.onRegistered);
    this.proxy.off('unregistered', this.onUnregistered);
    this.proxy.useRemoteRoutes(undefined);
    this.links.close();
    this.held.clear();
    await this.directory.close();
  }

  async resolve(dst: RoutingId): Promise<RemoteRoute> {
    const rid = dst.toString();
    this.counts.lookups++;
    const refused = (reason: Reason, message: string): RemoteRoute => {
      if (reason === Reason.UnknownDestination) this.counts.lookupsUnknown++;
      else this.counts.lookupsFailed++;
      return { refused: { reason, message } };
    };
    const here = `proxy ${this.proxy.endpoint}`;
    if (this.closed) return refused(Reason.GoingAway, `${here} is leaving its cluster`);
    const found = await this.directory.lookup(rid);
    if ('unreachable' in found) {
      return refused(Reason.Unreachable, `routing id ${rid} is not registered on ${here}, and ${found.unreachable}; until it is back, only servers registered on this proxy can be reached through it`);
    }
    if ('none' in found) return refused(Reason.UnknownDestination, `no server with routing id ${rid} is registered on ${here} or any proxy of its cluster ${this.name}`);
    const holder = decodeHolder(found.answer);
    if (holder === undefined) return refused(Reason.Unreachable, `the cluster directory answered the lookup of ${rid} with a malformed document`);
    if (holder.proxy === this.self) return refused(Reason.UnknownDestination, `no server with routing id ${rid} is registered on ${here} (it just left)`);
    if (!this.members.has(holder.proxy)) {
      return refused(Reason.Unreachable, `routing id ${rid} is held by proxy ${holder.proxy}, which is not a member of the cluster of ${here} (its cluster peers list)`);
    }
    try {
      const connection = await this.links.get(holder.proxy, holder.host, holder.port);
      this.counts.lookupsFound++;
      return { connection };
    } catch (err) {
      return refused(Reason.Unreachable, `routing id ${rid} is held by cluster proxy ${holder.proxy} at ${formatAddress(holder.host, holder.port)}, which ${here} cannot reach: ${(err as Error).message}`);
    }
  }

  private registered(rid: string, address: string): void {
    if (this.closed) return;
    const entry: Held = { at: Date.now(), address, generation: ++this.generation };
    this.held.set(rid, entry);
    this.directory.hold(rid);
    if (!this.directory.up) return; // claimed on (re)connection
    // The claim must be newer than the registration it replaces, whatever the clocks say: ask the
    // current holder, if any, when it claimed its own.
    void this.directory.lookup(rid).then((found) => {
      if (this.held.get(rid) !== entry) return;
      const previous = 'answer' in found ? decodeHolder(found.answer) : undefined;
      if (previous !== undefined && previous.proxy !== this.self && previous.at >= entry.at) entry.at = previous.at + 1;
      this.claim(rid, entry);
    });
  }

  private unregistered(rid: string): void {
    if (this.proxy.isRegistered(RoutingId.parse(rid))) return;
    this.held.delete(rid);
    this.directory.release(rid);
  }

  private claim(rid: string, entry: Held): void {
    this.directory.publish(rid, encodeJson(signClaim(this.name, this.proxy.identity, { rid, address: entry.address, at: entry.at })));
  }

  /** Another proxy claims `rid`, which this proxy holds: the newer registration stays. */
  private claimed(rid: string, data: Uint8Array): void {
    const mine = this.held.get(rid);
    if (mine === undefined) return;
    const claim = decodeClaim(this.name, rid, data);
    if (claim === undefined) {
      this.emit('dropped', { routingId: rid, reason: 'a malformed or unsigned claim' });
      return;
    }
    if (claim.proxy === this.self) return;
    if (!this.members.has(claim.proxy)) {
      this.emit('dropped', { routingId: rid, reason: `a claim by proxy ${claim.proxy}, which is not a member` });
      return;
    }
    if (newer(claim, { at: mine.at, proxy: this.self })) {
      this.held.delete(rid);
      this.directory.release(rid);
      this.proxy.supersede(RoutingId.parse(rid), claim.address, claim.proxy);
      this.emit('superseded', { routingId: rid, proxy: claim.proxy, address: claim.address });
    } else {
      // The other proxy holds the older one (claims crossed, or it registered while the directory
      // was down): say so again, and it lets go.
      this.claim(rid, mine);
    }
  }

  private answer(rid: string): Uint8Array | undefined {
    const entry = this.held.get(rid);
    if (entry === undefined) return undefined;
    return encodeHolder({ proxy: this.self, host: this.advertise.host, port: this.advertise.port, at: entry.at });
  }

  private directoryState(up: boolean, detail: string): void {
    if (this.closed) return;
    // Registrations made while it was away are claimed now; a holder of an older one lets go.
    if (up) for (const [rid, entry] of this.held) this.claim(rid, entry);
    this.emit('directory', { state: up ? 'connected' : 'disconnected', detail });
  }
}

function memberSet(members: Iterable<string>): Set<string> {
  const set = new Set<string>();
  for (const member of members) set.add(RoutingId.parse(member).toString());
  return set;
}

function advertised(proxy: Proxy, advertise: string | undefined): { host: string; port: number } {
  if (advertise !== undefined) return parseAddress(advertise);
  if (proxy.host === '0.0.0.0' || proxy.host === '::' || proxy.host === '') {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `a proxy listening on ${formatAddress(proxy.host, proxy.port)} must say where the other proxies of its cluster reach it (--advertise host:port)`);
  }
  return { host: proxy.host, port: proxy.port };
}
