import { Reason, type RidproxyError } from '../errors.js';
import { Endpoint, formatAddress } from '../id/endpoint.js';
import type { Identity } from '../id/identity.js';
import { RoutingId } from '../id/routing-id.js';
import { dialHop } from '../hop/dial.js';
import type { HopConnection } from '../hop/connection.js';
import type { ProxyConnection } from '../proxy/proxy.js';

export interface LinkEvent {
  /** The other proxy's routing id, and the address dialed. */
  proxy: string;
  address: string;
  state: 'opened' | 'closed' | 'failed';
  /** Why it closed or failed. */
  code?: RidproxyError['code'];
  reason?: string;
}

export interface PeerLinksOptions {
  /** This proxy's identity: it proves it to the other proxy, which checks it is a member. */
  identity: Identity;
  /** Hands a dialed connection to the proxy, which routes it (Proxy.adoptLink). */
  adopt(hop: HopConnection): ProxyConnection;
  /** Milliseconds a dial (connect and handshake) may take. */
  dialTimeout: number;
  /** Milliseconds a link that carries no VC is kept before it is closed. */
  idleTimeout: number;
  keepAliveInterval: number;
  maxPayload: number;
  event(event: LinkEvent): void;
}

interface Link {
  host: string;
  port: number;
  conn: ProxyConnection | undefined;
  dialing: Promise<ProxyConnection> | undefined;
  /** When the link was first seen without VCs by the idle sweep. */
  idleSince: number | undefined;
}

/**
 * The hop connections this proxy dials to the other proxies of its cluster, one per proxy,
 * shared by every VC it forwards there: it proves this proxy's key and pins the other's, so
 * each side knows it talks to a member. A link is dialed on first use (concurrent VCs wait for
 * the same dial), replaced when it closes or the other proxy moves, and closed after
 * `idleTimeout` without VCs. At most one per member, so memory is bounded by the member list.
 */
export class PeerLinks {
  private readonly links = new Map<string, Link>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: PeerLinksOptions) {}

  get size(): number {
    return this.links.size;
  }

  /** An open link to `proxy` at host:port, dialed if there is none; rejects with the dial's error. */
  get(proxy: string, host: string, port: number): Promise<ProxyConnection> {
    let link = this.links.get(proxy);
    if (link !== undefined && (link.host !== host || link.port !== port)) {
      // It moved (restarted elsewhere): VCs on the old link finish there; new ones go to the new address.
      this.retire(link);
      link = undefined;
    }
    const conn = link?.conn;
    if (conn !== undefined && usable(conn)) return Promise.resolve(conn);
    if (link?.dialing !== undefined) return link.dialing;
    if (this.closed) return Promise.reject(new Error('the cluster is closing'));
    const fresh: Link = { host, port, conn: undefined, dialing: undefined, idleSince: undefined };
    this.links.set(proxy, fresh);
    fresh.dialing = this.dial(proxy, fresh).finally(() => {
      fresh.dialing = undefined;
    });
    return fresh.dialing;
  }

  /** Lets every link go: no new VC on any, each closed once the VCs it carries are done (the proxy's drain bounds that). */
  close(): void {
    this.closed = true;
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const link of [...this.links.values()]) this.retire(link, 'the proxy is leaving its cluster');
    this.links.clear();
  }

  private async dial(proxy: string, link: Link): Promise<ProxyConnection> {
    const address = formatAddress(link.host, link.port);
    let hop: HopConnection;
    try {
      hop = await dialHop(new Endpoint(link.host, link.port, RoutingId.parse(proxy)), {
        identity: this.options.identity,
        signal: AbortSignal.timeout(this.options.dialTimeout),
        handshakeTimeout: this.options.dialTimeout,
        keepAliveInterval: this.options.keepAliveInterval,
        maxPayload: this.options.maxPayload,
        peerLabel: `cluster proxy ${proxy} at ${address}`,
      });
    } catch (err) {
      if (this.links.get(proxy) === link) this.links.delete(proxy);
      const error = err as RidproxyError;
      this.options.event({ proxy, address, state: 'failed', code: error.code, reason: error.message });
      throw err;
    }
    if (this.closed || this.links.get(proxy) !== link) {
      hop.close(Reason.GoingAway, 'the proxy is leaving its cluster');
      throw new Error('the cluster link was no longer wanted');
    }
    const conn = this.options.adopt(hop);
    link.conn = conn;
    hop.once('close', (err: RidproxyError | undefined) => {
      if (this.links.get(proxy) === link) this.links.delete(proxy);
      this.options.event({ proxy, address, state: 'closed', code: err?.code ?? 'ERR_CLOSED', reason: err?.message ?? 'closed' });
    });
    this.options.event({ proxy, address, state: 'opened' });
    this.armSweep();
    return conn;
  }

  /** Forgets a link for new VCs; it closes once the ones it carries are done. */
  private retire(link: Link, why = 'the cluster proxy moved'): void {
    for (const [proxy, held] of this.links) if (held === link) this.links.delete(proxy);
    const conn = link.conn;
    if (conn === undefined) return;
    if (conn.vcs.size === 0) conn.hop.close(Reason.GoingAway, why);
    // With VCs left, a GoAway makes the proxy close it after the last one (Proxy.closeIfIdle).
    else conn.hop.goAway(Reason.GoingAway, why);
  }

  private armSweep(): void {
    if (this.sweepTimer !== undefined) return;
    this.sweepTimer = setInterval(() => this.sweep(), Math.max(1, this.options.idleTimeout / 2));
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [proxy, link] of this.links) {
      const conn = link.conn;
      if (conn === undefined) continue;
      if (conn.vcs.size > 0) {
        link.idleSince = undefined;
      } else if (link.idleSince === undefined) {
        link.idleSince = now;
      } else if (now - link.idleSince >= this.options.idleTimeout) {
        // Forgotten first, so that no VC is forwarded onto a link being closed.
        this.links.delete(proxy);
        conn.hop.close(Reason.Normal, `cluster link idle for ${this.options.idleTimeout} ms`);
      }
    }
    if (this.links.size === 0 && this.sweepTimer !== undefined) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }
}

function usable(conn: ProxyConnection): boolean {
  return conn.hop.isOpen && !conn.hop.localGoAway && !conn.hop.peerGoAway;
}
