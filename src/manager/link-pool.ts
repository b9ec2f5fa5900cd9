import type { Socket } from 'node:net';
import { AuthenticationError } from '../errors.js';
import type { VirtualCircuit } from '../hop/circuit.js';
import { HopConnection } from '../hop/connection.js';
import { dialHop } from '../hop/dial.js';
import { Endpoint } from '../id/endpoint.js';
import type { Identity } from '../id/identity.js';
import { RoutingId } from '../id/routing-id.js';
import { Link, type IncomingVc, type VcDecision } from './link.js';
import type { ResolvedManagerOptions } from './options.js';
import type { SharedAttempt } from './shared-attempt.js';

/** What the pool needs from the Manager that owns it. */
export interface LinkPoolOwner {
  readonly identity: Identity;
  readonly options: ResolvedManagerOptions;
  isClosing(): boolean;
  /** A setup dials share, bounded by dialTimeout and ended by close(). */
  attempt<T>(what: string, run: (signal: AbortSignal) => Promise<T>): SharedAttempt<T>;
  /** Decides a VC a peer opens on one of the links. */
  decide(incoming: IncomingVc): VcDecision;
  /** A VC a peer opened on a link, with this process's endpoint on it and the peer's at a routing id. */
  circuit(circuit: VirtualCircuit, local: string, remoteAt: (rid: RoutingId) => string): void;
}

/**
 * A process's hop connections, dialed and accepted: one per remote address, shared by every
 * dial and registration to it, each closed after `linkIdleTimeout` without VCs or a registration.
 */
export class LinkPool {
  /** Every link open, dialed or accepted. */
  readonly all = new Set<Link>();
  /** Dialed links by address, while connecting and once up. */
  private readonly byAddress = new Map<string, SharedAttempt<Link>>();
  /** Accepted sockets still in their handshake. */
  private readonly handshaking = new Set<Socket>();

  constructor(private readonly owner: LinkPoolOwner) {}

  /**
   * The hop connection to `target.address`, made on first use. Its peer must be the process the
   * endpoint pins (the proxy, or the destination itself), unless `allowUnpinnedProxy` and the
   * endpoint names no proxy.
   */
  async linkTo(target: Endpoint, signal: AbortSignal, allowUnpinnedProxy = false): Promise<Link> {
    const expected = allowUnpinnedProxy && target.proxyRoutingId.isNull() ? RoutingId.NULL : target.hopRoutingId;
    const link = await this.shared(target, expected, signal);
    if (!expected.isNull() && !link.hop.peerRoutingId.equals(expected)) {
      throw new AuthenticationError(`the process at ${target.address} proved routing id ${link.hop.peerRoutingId}, not the expected ${expected}`);
    }
    return link;
  }

  /** Runs the handshake on a socket a listener accepted, and adopts the link it makes. */
  accept(socket: Socket): void {
    if (this.owner.isClosing()) {
      socket.destroy();
      return;
    }
    this.handshaking.add(socket);
    socket.once('close', () => this.handshaking.delete(socket));
    HopConnection.establish({
      socket,
      identity: this.owner.identity,
      initiator: false,
      handshakeTimeout: this.owner.options.handshakeTimeout,
      keepAliveInterval: this.owner.options.keepAliveInterval,
    }).then(
      (hop) => {
        // From here its link owns the socket, and close() ends it gracefully, after its VCs.
        this.handshaking.delete(socket);
        if (this.owner.isClosing()) hop.destroy();
        else this.adopt(hop);
      },
      () => {
        // The handshake failure already closed the socket; the peer was told why when possible.
      },
    );
  }

  /** Drops the handshakes in progress: close() has begun, and no new link may come of them. */
  dropHandshakes(): void {
    for (const socket of this.handshaking) socket.destroy();
  }

  /** Closes every link once those still connecting have settled, and resolves when all are gone. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.byAddress.values()].map((attempt) => attempt.result));
    for (const link of this.all) link.close();
    await Promise.all([...this.all].map((link) => link.hop.closed));
  }

  private async shared(target: Endpoint, expected: RoutingId, signal: AbortSignal): Promise<Link> {
    const key = target.address;
    const attempt = this.byAddress.get(key) ?? this.start(key, target, expected);
    const link = await attempt.join(signal);
    if (link.usable) return link;
    // A link going away takes no new VCs: the first dial to notice replaces it, the others share the replacement.
    if (this.byAddress.get(key) === attempt) this.byAddress.delete(key);
    return (this.byAddress.get(key) ?? this.start(key, target, expected)).join(signal);
  }

  private start(key: string, target: Endpoint, expected: RoutingId): SharedAttempt<Link> {
    const attempt = this.owner.attempt(`connecting to ${target.address}`, (setup) => this.connect(target, expected, setup));
    this.byAddress.set(key, attempt);
    const forget = (): void => {
      if (this.byAddress.get(key) === attempt) this.byAddress.delete(key);
    };
    attempt.signal.addEventListener('abort', forget, { once: true });
    attempt.result.then((link) => link.on('close', forget), forget);
    return attempt;
  }

  private async connect(target: Endpoint, expected: RoutingId, signal: AbortSignal): Promise<Link> {
    const { identity, options } = this.owner;
    try {
      const hop = await dialHop(target, { identity, expectedPeer: expected, handshakeTimeout: options.handshakeTimeout, keepAliveInterval: options.keepAliveInterval, signal });
      return this.adopt(hop);
    } catch (err) {
      if (err instanceof AuthenticationError && target.proxyRoutingId.isNull() && !expected.isNull()) {
        throw new AuthenticationError(`${err.message}; if that process is a proxy, the endpoint must name it: ridp://<its routing id>@${target.address}/${target.routingId}`);
      }
      throw err;
    }
  }

  private adopt(hop: HopConnection): Link {
    const { identity, options } = this.owner;
    const link = new Link(hop, identity, options.vcWindow, options.maxVcWindow);
    this.all.add(link);
    link.decide = (incoming) => this.owner.decide(incoming);
    link.on('circuit', (circuit: VirtualCircuit) => {
      const local = new Endpoint(hostOf(hop.socket.localAddress), hop.socket.localPort ?? 0, identity.routingId).toString();
      const remoteAt = (rid: RoutingId): string => new Endpoint(hostOf(hop.socket.remoteAddress), hop.socket.remotePort ?? 0, rid).toString();
      this.owner.circuit(circuit, local, remoteAt);
    });
    let idleTimer: NodeJS.Timeout | undefined;
    link.on('idle', () => {
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        if (link.circuitCount === 0 && !link.registered) link.close();
      }, options.linkIdleTimeout);
      idleTimer.unref();
    });
    link.on('close', () => {
      if (idleTimer) clearTimeout(idleTimer);
      this.all.delete(link);
    });
    link.start();
    return link;
  }
}

/** An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d; endpoints name it a.b.c.d. */
function hostOf(address: string | undefined): string {
  if (address === undefined) return '0.0.0.0';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
