import type { Duplex } from 'node:stream';
import { ManagerError, UnauthorizedError, type RidproxyError } from '../errors.js';
import { Endpoint } from '../id/endpoint.js';
import type { Identity } from '../id/identity.js';
import { RoutingId } from '../id/routing-id.js';
import { unpinned } from '../hop/dial.js';
import type { VirtualCircuit } from '../hop/circuit.js';
import { secureChannel } from '../secure/index.js';
import { withDeadline } from './deadline.js';
import type { Flow } from './flow.js';
import type { LinkPool } from './link-pool.js';
import type { DialOptions, ResolvedManagerOptions } from './options.js';
import type { SharedAttempt } from './shared-attempt.js';
import { firstToSucceed } from './staggered.js';
import { VcSession } from './vc-session.js';

/** Who a failed incoming VC came from. */
export interface VcErrorInfo {
  /** The source routing ID the VC's open frame claimed: unproven. */
  claimedRoutingId: string;
  /** The routing ID the peer proved end to end, when it got that far (e.g. refused by authorize). */
  remoteRoutingId?: string;
}

/** What the cache needs from the Manager that owns it. */
export interface VcCacheOwner {
  readonly identity: Identity;
  readonly options: ResolvedManagerOptions;
  readonly links: LinkPool;
  /** Aborts with close(): ends incoming handshakes still in progress. */
  readonly closing: AbortSignal;
  isClosing(): boolean;
  /** A setup dials share, bounded by dialTimeout and ended by close(). */
  attempt<T>(what: string, run: (signal: AbortSignal) => Promise<T>): SharedAttempt<T>;
  /** A flow the peer opened; `allowed` is a promise while authorize still decides about the peer of a VC this process dialed. */
  flow(flow: Flow, allowed: true | Promise<boolean>): void;
  /** An incoming VC failed before it carried flows. */
  vcError(err: RidproxyError, info: VcErrorInfo): void;
}

/**
 * The VCs of a process, dialed and accepted, and the cache that lets dials reuse them: one VC
 * per remote routing ID, filed under the identity the peer proved, with concurrent dials to one
 * routing ID sharing a single setup.
 */
export class VcCache {
  /** The VC a dial to a routing ID reuses. */
  private readonly byRoutingId = new Map<string, VcSession>();
  private readonly pending = new Map<string, SharedAttempt<VcSession>>();
  /** Every VC until it closes, cached or not (a second VC to one routing ID, one dialed to "whoever answers"). */
  private readonly all = new Set<VcSession>();

  constructor(private readonly owner: VcCacheOwner) {}

  /**
   * A flow to the process `target` names, over the VC to its routing ID if there is one. An
   * address-less endpoint (`ridp:///<rid>`) can only use such a VC: ERR_NO_CACHED_VC without one.
   */
  async dial(target: Endpoint, options: DialOptions): Promise<Flow> {
    if (options.token !== undefined && target.hopRoutingId.isNull() && !options.allowUnpinnedProxy) throw unpinned(target, 'present its dial token');
    const vc = await withDeadline(options.signal, options.timeout ?? this.owner.options.dialTimeout, `dialing ${target}`, async (signal) => {
      const found = await this.vcTo(target, signal, options);
      // A reused VC was authorized by whoever opened it; this caller's check must pass too.
      if (options.authorize && !(await options.authorize({ publicKey: Buffer.from(found.remotePublicKey), routingId: found.remoteRoutingId }))) {
        throw new UnauthorizedError(`refused peer ${found.remoteRoutingId}: authorize returned false`);
      }
      return found;
    });
    return vc.openFlow(options.sideChannel ?? false);
  }

  /** A flow over the open VC to `rid`; ERR_NO_CACHED_VC if there is none. */
  dialCached(rid: RoutingId, sideChannel: boolean): Flow {
    const vc = this.byRoutingId.get(rid.toString());
    if (!vc?.isOpen) throw new ManagerError('ERR_NO_CACHED_VC', `no open VC to routing id ${rid}`);
    return vc.openFlow(sideChannel);
  }

  /**
   * The acceptor's half of a new VC: the secure handshake, in which the peer must prove the
   * source routing ID its open frame claimed (a proxy, or a peer, may lie about it) and pass our
   * authorize check; then the VcSession over it.
   */
  async accept(circuit: VirtualCircuit, local: string, remoteAt: (rid: RoutingId) => string): Promise<void> {
    const { identity, options } = this.owner;
    const claimed = circuit.remoteRoutingId;
    if (!options.encryption) {
      this.start(circuit, circuit, circuit.remotePublicKey, false, local, remoteAt(claimed));
      return;
    }
    let proven: RoutingId | undefined;
    const authorize = options.authorize;
    try {
      const channel = await secureChannel(circuit, {
        identity,
        role: 'acceptor',
        expectedRoutingId: claimed,
        authorize: (peer) => {
          proven = peer.routingId;
          return authorize ? authorize(peer) : true;
        },
        timeout: options.handshakeTimeout,
        signal: this.owner.closing,
      });
      if (this.owner.isClosing()) {
        channel.stream.destroy();
        return;
      }
      this.start(circuit, channel.stream, channel.peerPublicKey, false, local, remoteAt(channel.peerRoutingId), channel.rtt);
    } catch (err) {
      if (!this.owner.isClosing()) this.owner.vcError(err as RidproxyError, { claimedRoutingId: claimed.toString(), remoteRoutingId: proven?.toString() });
    }
  }

  /** Closes every VC gracefully (see VcSession.close), and resolves once all are gone. */
  async close(drainTimeout: number, message: string): Promise<void> {
    await Promise.all([...this.all].map((vc) => vc.close(drainTimeout, message)));
  }

  /** Resolves once every VC open now has closed. */
  async closed(): Promise<void> {
    await Promise.all([...this.all].map((vc) => vc.closed));
  }

  private vcTo(target: Endpoint, signal: AbortSignal, options: DialOptions): Promise<VcSession> {
    const key = target.routingId.toString();
    // "Whatever process answers" names no one VC: each such dial sets up its own.
    const shareable = !target.routingId.isNull();
    const cached = this.byRoutingId.get(key);
    if (shareable && cached?.isOpen) return Promise.resolve(cached);
    let attempt = shareable ? this.pending.get(key) : undefined;
    if (attempt === undefined && !target.hasAddress) {
      return Promise.reject(new ManagerError('ERR_NO_CACHED_VC', `no open VC to routing id ${target.routingId}, and endpoint ${target} names no address to open one at`));
    }
    if (attempt === undefined) {
      const created = this.owner.attempt(`opening a VC to ${target}`, (setup) => this.open(target, setup, options));
      if (shareable) {
        this.pending.set(key, created);
        const forget = (): void => {
          if (this.pending.get(key) === created) this.pending.delete(key);
        };
        // Synchronously on abandonment, so a dial right after it starts afresh instead of joining a dead setup.
        created.signal.addEventListener('abort', forget, { once: true });
        created.result.then(forget, forget);
      }
      attempt = created;
    }
    return attempt.join(signal);
  }

  /** A VC to `target`, over the first of its routes to answer (several for a server on several proxies). */
  private open(target: Endpoint, signal: AbortSignal, options: DialOptions): Promise<VcSession> {
    const routes = target.routes;
    if (routes.length === 1) return this.openRoute(target, signal, options);
    return firstToSucceed(
      routes.map((route) => ({ label: route.address, run: (routeSignal: AbortSignal) => this.openRoute(route, routeSignal, options) })),
      signal,
      (late) => void late.close(0, 'another route answered first'),
    );
  }

  private async openRoute(target: Endpoint, signal: AbortSignal, options: DialOptions): Promise<VcSession> {
    const { identity } = this.owner;
    const link = await this.owner.links.linkTo(target, signal, options.allowUnpinnedProxy);
    const dst = target.routingId.isNull() ? link.hop.peerRoutingId : target.routingId;
    const circuit = await link.openVc(dst, signal, options.token);
    const remote = target.routingId.isNull() ? target.withRoutingId(dst) : target;
    const local = new Endpoint(target.host, target.port, identity.routingId).toString();
    if (!this.owner.options.encryption) return this.start(circuit, circuit, circuit.remotePublicKey, true, local, remote.toString());
    // The peer must prove, inside the VC, that it holds the key behind the RID we dialed: the proxy is not trusted with that.
    const channel = await secureChannel(circuit, { identity, role: 'dialer', expectedRoutingId: dst, authorize: options.authorize, signal });
    return this.start(circuit, channel.stream, channel.peerPublicKey, true, local, remote.toString(), channel.rtt);
  }

  private start(
    circuit: VirtualCircuit,
    transport: Duplex,
    remotePublicKey: Buffer,
    dialer: boolean,
    localEndpoint: string,
    remoteEndpoint: string,
    setupRtt?: number,
  ): VcSession {
    const { options } = this.owner;
    // An acceptor's peer passed authorize in the handshake; a dialed peer opening flows back must pass it too.
    const authorize = options.authorize;
    const peer = { publicKey: Buffer.from(remotePublicKey), routingId: RoutingId.fromPublicKey(remotePublicKey) };
    const allowed: true | Promise<boolean> = !dialer || authorize === undefined ? true : Promise.resolve().then(() => authorize(peer)).then((ok) => ok === true, () => false);
    const vc = new VcSession({
      circuit,
      onFlow: (flow) => this.owner.flow(flow, allowed),
      transport,
      remotePublicKey,
      dialer,
      localEndpoint,
      remoteEndpoint,
      streamWindow: options.streamWindow,
      maxStreamWindow: options.maxStreamWindow,
      maxStreams: options.maxFlowsPerVc,
      keepAliveInterval: options.keepAliveInterval,
      pendingAcceptBudget: options.pendingAcceptBudget,
      maxPendingAccept: options.maxPendingAccept,
      idleTimeout: options.vcIdleTimeout,
      setupRtt,
    });
    // Filed under the identity the peer proved, so a dial reuses only a VC to the process it names.
    const key = vc.remoteRoutingId.toString();
    this.all.add(vc);
    if (!this.byRoutingId.get(key)?.isOpen) this.byRoutingId.set(key, vc);
    void vc.closed.then(() => {
      this.all.delete(vc);
      if (this.byRoutingId.get(key) === vc) this.byRoutingId.delete(key);
    });
    if (this.owner.isClosing()) vc.destroy();
    return vc;
  }
}
