import { ProtocolError, Reason, type RidproxyError } from '../errors.js';
import { CONTROL_SLACK } from '../hop/connection.js';
import { TokenPurpose } from '../hop/handshake.js';
import { FrameType, decodeCredit, decodeOpenVc, decodeVcAccepted, encodeOpenVc, encodeReason, payloadOf, type Frame } from '../wire/index.js';
import { KeyedCounter } from './admission.js';
import type { ResolvedProxyOptions } from './options.js';
import type { ProxyConnection, ProxyCounters, VcRoute, VcSide } from './proxy-connection.js';
import type { Registry } from './registry.js';

/** What the VC table needs from the proxy that owns it. */
export interface CircuitHost {
  /** True once the proxy is shutting down: new VCs are refused. */
  draining(): boolean;
  /** A token check failed on `conn`: it is closed. */
  refuseToken(conn: ProxyConnection, message: string): void;
  /** `conn` gained or lost a VC (it may now be idle, or done going away). */
  vcsChanged(conn: ProxyConnection): void;
}

/**
 * The VC table: pairs (connection, vci) ends, rewrites VC ids, forwards payload buffers as they
 * arrived without reading them, and tracks credit per VC direction so no peer can make the proxy
 * hold more than the windows it committed to. Those commitments are reserved against budgets
 * charged to the opener: its connection, its routing ID, its address group, and the proxy.
 */
export class CircuitTable {
  /** Window bytes committed to open VCs in all. */
  reserved = 0;
  private readonly reservedByIdentity = new KeyedCounter();
  private readonly reservedByGroup = new KeyedCounter();

  constructor(
    private readonly options: ResolvedProxyOptions,
    private readonly registry: Registry,
    private readonly counters: ProxyCounters,
    private readonly endpoint: string,
    private readonly host: CircuitHost,
  ) {}

  open(conn: ProxyConnection, frame: Frame): void {
    const { hop } = conn;
    const vci = frame.vci;
    if (!hop.notePeerVci(vci)) {
      throw new ProtocolError('ERR_PROTOCOL', `OpenVc reuses or misallocates VC id ${vci}`);
    }
    const payload = payloadOf(frame);
    const open = decodeOpenVc(payload);
    if (!open.src.equals(hop.peerRoutingId) || !open.srcPublicKey.equals(hop.peerPublicKey)) {
      throw new ProtocolError('ERR_PROTOCOL', `OpenVc claims source ${open.src}, but this connection proved routing id ${hop.peerRoutingId}`);
    }
    const reject = (reason: Reason, message: string): void => {
      this.counters.vcsRejected++;
      hop.send(FrameType.VcRejected, vci, encodeReason(reason, message));
    };
    if (this.host.draining() || hop.localGoAway) {
      reject(Reason.GoingAway, `proxy ${this.endpoint} is shutting down`);
      return;
    }
    const dialToken = this.options.dialToken;
    if (dialToken !== undefined && !hop.tokenMatches(TokenPurpose.Dial, vci, dialToken, open.tokenMac)) {
      const message = `proxy ${this.endpoint} requires a valid dial token`;
      reject(Reason.Unauthorized, message);
      this.host.refuseToken(conn, message);
      return;
    }
    if (open.window === 0 || open.window > this.options.maxVcWindow) {
      reject(Reason.Limit, `VC window ${open.window} is outside 1-${this.options.maxVcWindow} bytes allowed by proxy ${this.endpoint}`);
      return;
    }
    const target = this.registry.lookup(open.dst);
    if (target === undefined || !target.hop.isOpen) {
      reject(Reason.UnknownDestination, `no server with routing id ${open.dst} is registered on proxy ${this.endpoint}`);
      return;
    }
    if (target.hop.peerGoAway) {
      reject(Reason.GoingAway, `server ${open.dst} is going away from proxy ${this.endpoint}`);
      return;
    }
    const limit = this.options.maxVcsPerConnection;
    // Only the opener's count: a server carries VCs from many clients, and one of them must not use up its share.
    if (conn.opened >= limit) {
      // A peer that keeps opening after being told is flooding, not racing: cut it off.
      if (++conn.limitRefusals > limit) {
        throw new ProtocolError('ERR_PROTOCOL', `${hop.peerLabel} kept opening VCs after ${limit} refusals for the limit of ${limit} VCs per connection`);
      }
      reject(Reason.Limit, `proxy ${this.endpoint} allows at most ${limit} VCs per connection`);
      return;
    }
    conn.limitRefusals = 0;
    // Reserve as if the acceptor's window will match the opener's; VcAccepted settles the real figure.
    const reserve = 2 * open.window;
    const short = this.budgetShortfall(conn, reserve);
    if (short !== undefined) {
      reject(Reason.Limit, `proxy ${this.endpoint} has no buffer budget left for another VC from this ${short}`);
      return;
    }
    const route: VcRoute = {
      opener: conn,
      openerVci: vci,
      acceptor: target,
      acceptorVci: target.hop.allocateVci(),
      accepted: false,
      creditToAcceptor: 0,
      creditToOpener: open.window,
      openerWindow: open.window,
      acceptorWindow: 0,
      reserved: 0,
      openTimer: undefined,
    };
    this.adjustReservation(route, reserve);
    conn.vcs.set(vci, { route, opener: true });
    conn.opened++;
    target.vcs.set(route.acceptorVci, { route, opener: false });
    this.host.vcsChanged(conn);
    route.openTimer = setTimeout(() => {
      route.openTimer = undefined;
      this.closeRoute(route, Reason.Timeout, `server ${open.dst} did not answer the VC within ${this.options.vcOpenTimeout} ms`);
    }, this.options.vcOpenTimeout);
    route.openTimer.unref();
    // Rebuilt without the token MAC: a server has no business with the dial token.
    target.hop.send(FrameType.OpenVc, route.acceptorVci, encodeOpenVc({ dst: open.dst, src: open.src, srcPublicKey: open.srcPublicKey, window: open.window }));
  }

  accepted(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    if (side.opener || route.accepted) {
      throw new ProtocolError('ERR_PROTOCOL', `VcAccepted for VC id ${frame.vci}, which is not awaiting acceptance from this side`);
    }
    const { window, publicKey } = decodeVcAccepted(payloadOf(frame));
    if (!publicKey.equals(conn.hop.peerPublicKey)) {
      throw new ProtocolError('ERR_PROTOCOL', `VcAccepted carries a public key other than the one ${conn.hop.peerLabel} proved`);
    }
    if (window === 0 || window > this.options.maxVcWindow) {
      this.closeRoute(route, Reason.Limit, `VC window ${window} is outside 1-${this.options.maxVcWindow} bytes allowed by proxy ${this.endpoint}`);
      return;
    }
    const growth = route.openerWindow + window - route.reserved;
    if (growth > 0 && this.budgetShortfall(route.opener, growth) !== undefined) {
      this.closeRoute(route, Reason.Limit, `proxy ${this.endpoint} has no buffer budget left for a ${window}-byte VC window`);
      return;
    }
    route.accepted = true;
    clearTimeout(route.openTimer);
    route.openTimer = undefined;
    route.acceptorWindow = window;
    route.creditToAcceptor = window;
    this.adjustReservation(route, route.openerWindow + window);
    route.opener.hop.send(FrameType.VcAccepted, route.openerVci, frame.parts);
  }

  data(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    const length = frame.length;
    if (side.opener) {
      if (length > route.creditToAcceptor) throw this.overrun(conn, route.creditToAcceptor, length);
      route.creditToAcceptor -= length;
    } else {
      if (length > route.creditToOpener) throw this.overrun(conn, route.creditToOpener, length);
      route.creditToOpener -= length;
    }
    const peer = side.opener ? route.acceptor : route.opener;
    peer.hop.send(FrameType.Data, side.opener ? route.acceptorVci : route.openerVci, frame.parts);
    this.counters.bytesForwarded += length;
    conn.bytesIn += length;
    peer.bytesOut += length;
    const buffered = peer.hop.bufferedBytes;
    if (buffered > this.counters.peakConnectionBufferedBytes) this.counters.peakConnectionBufferedBytes = buffered;
  }

  credit(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    const amount = decodeCredit(payloadOf(frame));
    // Credit flows from the receiver: the opener's Credit lets the acceptor send more, and vice versa.
    if (side.opener) {
      if (route.creditToOpener + amount > route.openerWindow) throw this.creditOverflow(conn, route.openerWindow);
      route.creditToOpener += amount;
      route.acceptor.hop.send(FrameType.Credit, route.acceptorVci, frame.parts);
    } else {
      if (route.creditToAcceptor + amount > route.acceptorWindow) throw this.creditOverflow(conn, route.acceptorWindow);
      route.creditToAcceptor += amount;
      route.opener.hop.send(FrameType.Credit, route.openerVci, frame.parts);
    }
  }

  close(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    if (frame.type === FrameType.VcRejected && (side.opener || route.accepted)) {
      throw new ProtocolError('ERR_PROTOCOL', `VcRejected for VC id ${frame.vci}, which is not awaiting acceptance from this side`);
    }
    const peer = side.opener ? route.acceptor : route.opener;
    const type = frame.type === FrameType.CloseVc && !side.opener && !route.accepted ? FrameType.VcRejected : frame.type;
    peer.hop.send(type, side.opener ? route.acceptorVci : route.openerVci, frame.parts);
    if (frame.type === FrameType.VcRejected) this.counters.vcsRejected++;
    this.forget(route);
  }

  /** The VC a frame belongs to; undefined for a frame that raced with the VC's close (dropped). */
  private sideOf(conn: ProxyConnection, vci: number): VcSide | undefined {
    const side = conn.vcs.get(vci);
    if (side !== undefined) return side;
    if (conn.hop.wasAllocated(vci)) {
      this.counters.staleFrames++;
      return undefined;
    }
    throw new ProtocolError('ERR_PROTOCOL', `frame for unknown VC id ${vci}`);
  }

  private overrun(conn: ProxyConnection, credit: number, length: number): ProtocolError {
    return new ProtocolError('ERR_PROTOCOL', `${conn.hop.peerLabel} sent a ${length}-byte Data frame with only ${credit} bytes of credit`);
  }

  private creditOverflow(conn: ProxyConnection, window: number): ProtocolError {
    return new ProtocolError('ERR_PROTOCOL', `${conn.hop.peerLabel} granted credit beyond its announced window of ${window} bytes`);
  }

  /** Closes a VC on both sides with a reason (e.g. a limit the acceptor broke). */
  private closeRoute(route: VcRoute, reason: Reason, message: string): void {
    const payload = encodeReason(reason, message);
    route.opener.hop.send(route.accepted ? FrameType.CloseVc : FrameType.VcRejected, route.openerVci, payload);
    route.acceptor.hop.send(FrameType.CloseVc, route.acceptorVci, payload);
    this.forget(route);
  }

  private forget(route: VcRoute): void {
    clearTimeout(route.openTimer);
    if (route.opener.vcs.delete(route.openerVci)) route.opener.opened--;
    route.acceptor.vcs.delete(route.acceptorVci);
    this.adjustReservation(route, 0);
    this.host.vcsChanged(route.opener);
    if (route.acceptor !== route.opener) this.host.vcsChanged(route.acceptor);
  }

  /**
   * Which budget `extra` more bytes of windows for a VC opened by `opener` would exceed: the
   * global one, or the share of its connection, identity or address group; undefined when all
   * fit. Reservations are charged to the opener, so one peer cannot spend another's share,
   * whatever number of VCs it opens or connections it makes.
   */
  private budgetShortfall(opener: ProxyConnection, extra: number): string | undefined {
    const o = this.options;
    if (opener.openedReserved + extra > o.connectionBufferBudget) return 'connection';
    if (this.reservedByIdentity.get(opener.identity) + extra > o.identityBufferBudget) return 'routing id';
    if (this.reservedByGroup.get(opener.group) + extra > o.addressBufferBudget) return 'address';
    if (this.reserved + extra > o.bufferBudget) return 'proxy';
    return undefined;
  }

  private adjustReservation(route: VcRoute, amount: number): void {
    const delta = amount - route.reserved;
    route.reserved = amount;
    this.reserved += delta;
    this.reservedByIdentity.add(route.opener.identity, delta);
    this.reservedByGroup.add(route.opener.group, delta);
    route.opener.openedReserved += delta;
    for (const conn of route.opener === route.acceptor ? [route.opener] : [route.opener, route.acceptor]) {
      conn.reserved += delta;
      // Credit lets the VCs of a connection queue up to their windows toward it; more than that
      // (and room for control replies) unread means the peer stopped reading.
      conn.hop.outputLimit = CONTROL_SLACK + conn.reserved;
    }
  }

  /** Closes every VC of `conn` on both of its ends with `reason` (a proxy shutting down). */
  closeAll(conn: ProxyConnection, reason: Reason, message: string): void {
    for (const { route } of [...conn.vcs.values()]) this.closeRoute(route, reason, message);
  }

  /** Closes every VC of a connection that is gone, telling the other end of each why. */
  dropConnection(conn: ProxyConnection, err: RidproxyError | undefined): void {
    const why = err?.code === 'ERR_SUPERSEDED' ? 'was superseded by a newer connection' : 'was lost';
    for (const { route, opener } of conn.vcs.values()) {
      const role = opener ? 'client' : 'server';
      const message = `${role} connection of ${conn.hop.peerRoutingId} to proxy ${this.endpoint} ${why}`;
      const payload = encodeReason(Reason.ConnectionLost, message);
      if (opener) route.acceptor.hop.send(FrameType.CloseVc, route.acceptorVci, payload);
      else route.opener.hop.send(route.accepted ? FrameType.CloseVc : FrameType.VcRejected, route.openerVci, payload);
      this.forget(route);
    }
  }
}
