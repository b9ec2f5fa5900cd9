import type { EventEmitter } from 'node:events';
import { ProtocolError, Reason, codeForReason, type RidproxyError } from '../errors.js';
import { RoutingId } from '../id/routing-id.js';
import { ReceiveWindow, WINDOW_IDLE_MS } from '../flow-control/receive-window.js';
import { DEFAULT_VC_WINDOW, MAX_DATA_FRAME, MAX_VC_WINDOW } from '../hop/circuit.js';
import { TokenPurpose } from '../hop/handshake.js';
import { FrameType, decodeCredit, decodeCreditReturn, decodeCreditRevoke, decodeOpenVc, decodeReason, decodeVcAccepted, encodeCredit, encodeOpenVc, encodeReason, encodeVcAccepted, encodeWindow, payloadOf, type Frame } from '../wire/index.js';
import { KeyedCounter } from './admission.js';
import type { ResolvedProxyOptions } from './options.js';
import type { ProxyConnection, ProxyCounters, VcCharge, VcDirection, VcRoute, VcSide } from './proxy-connection.js';
import type { RemoteRoutes } from './remote.js';
import type { Registry } from './registry.js';
import type { ProxyEvents, ProxyVcClosedEvent, ProxyVcEvent } from './events.js';

/** What the VC table needs from the proxy that owns it. */
export interface CircuitHost {
  /** True once the proxy is shutting down: new VCs are refused. */
  draining(): boolean;
  /** A token check failed on `conn`: it is closed. */
  refuseToken(conn: ProxyConnection, message: string): void;
  /** `conn` gained or lost a VC (it may now be idle, or done going away). */
  vcsChanged(conn: ProxyConnection): void;
  /** Where VC refusals, opens and closes are reported. */
  events: EventEmitter<ProxyEvents>;
  /** Where VCs to routing ids registered on no connection here go (a cluster), if anywhere. */
  remote(): RemoteRoutes | undefined;
}

/**
 * The VC table: pairs (connection, vci) ends, rewrites VC ids, and forwards payload buffers as
 * they arrived without reading them. Credit is hop by hop: each sending side gets the proxy's
 * own window, which grows with that side's path while the budgets allow, and data goes on as
 * the receiving side grants credit and its socket drains. So the proxy holds, per VC direction,
 * at most the window it granted, and its budgets (charged to the opener: its connection, its
 * routing ID, its address group, and the proxy's) limit those windows: bytes the proxy may
 * actually have to hold, not the end processes' windows.
 */
export class CircuitTable {
  /** Window bytes committed to open VCs in all. */
  reserved = 0;
  private readonly reservedByIdentity = new KeyedCounter();
  private readonly reservedByGroup = new KeyedCounter();
  /** Routes whose windows have grown: checked every WINDOW_IDLE_MS so that idle ones give their reservation back. */
  private readonly grown = new Set<VcRoute>();
  private sweepTimer: NodeJS.Timeout | undefined;

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
    // A cluster member forwards VCs others opened: the source is theirs, proved to the first proxy.
    const member = conn.member;
    if (!member && (!open.src.equals(hop.peerRoutingId) || !open.srcPublicKey.equals(hop.peerPublicKey))) {
      throw new ProtocolError('ERR_PROTOCOL', `OpenVc claims source ${open.src}, but this connection proved routing id ${hop.peerRoutingId} (only proxies of this proxy's cluster open VCs for others)`);
    }
    if (member && !RoutingId.fromPublicKey(open.srcPublicKey).equals(open.src)) {
      throw new ProtocolError('ERR_PROTOCOL', `cluster proxy ${conn.identity} forwarded an OpenVc whose source key is not routing id ${open.src}'s`);
    }
    const reject = (reason: Reason, message: string): void => {
      this.counters.vcsRejected++;
      hop.send(FrameType.VcRejected, vci, encodeReason(reason, message));
      this.refusedEvent(conn, open.src.toString(), open.dst.toString(), reason, message);
    };
    if (this.host.draining() || hop.localGoAway) {
      reject(Reason.GoingAway, `proxy ${this.endpoint} is shutting down`);
      return;
    }
    const dialToken = this.options.dialToken;
    // A member's opens were checked by the proxy their client dialed: the token is for that hop only.
    if (dialToken !== undefined && !member && !hop.tokenMatches(TokenPurpose.Dial, vci, dialToken, open.tokenMac)) {
      const message = `proxy ${this.endpoint} requires a valid dial token`;
      reject(Reason.Unauthorized, message);
      this.host.refuseToken(conn, message);
      return;
    }
    if (open.window === 0 || open.window > MAX_VC_WINDOW) {
      throw new ProtocolError('ERR_PROTOCOL', `OpenVc announces a window of ${open.window} bytes (allowed: 1-${MAX_VC_WINDOW})`);
    }
    const found = this.registry.lookup(open.dst);
    const target = found !== undefined && found.hop.isOpen ? found : undefined;
    // Never forwarded twice: a member asked here because the directory named this proxy.
    const remote = target === undefined && !member ? this.host.remote() : undefined;
    if (target === undefined && remote === undefined) {
      const cluster = member ? ` (cluster proxy ${conn.identity} forwarded the VC here; the server may just have moved)` : '';
      reject(Reason.UnknownDestination, `no server with routing id ${open.dst} is registered on proxy ${this.endpoint}${cluster}`);
      return;
    }
    if (target?.hop.peerGoAway) {
      reject(Reason.GoingAway, `server ${open.dst} is going away from proxy ${this.endpoint}`);
      return;
    }
    const limit = this.options.maxVcsPerConnection;
    // Only the opener's count: a server carries VCs from many clients, and one of them must not use
    // up its share. A member's link carries VCs of many clients too: the budgets bound those.
    if (!member && conn.opened >= limit) {
      // A peer that keeps opening after being told is flooding, not racing: cut it off.
      if (++conn.limitRefusals > limit) {
        throw new ProtocolError('ERR_PROTOCOL', `${hop.peerLabel} kept opening VCs after ${limit} refusals for the limit of ${limit} VCs per connection`);
      }
      reject(Reason.Limit, `proxy ${this.endpoint} allows at most ${limit} VCs per connection`);
      return;
    }
    conn.limitRefusals = 0;
    const charge: VcCharge = member ? { identity: open.src.toString(), connection: undefined, group: undefined } : { identity: conn.identity, connection: conn, group: conn.group };
    const initial = this.initialWindow();
    const short = this.budgetShortfall(charge, 2 * initial);
    if (short !== undefined) {
      reject(Reason.Limit, `proxy ${this.endpoint} has no buffer budget left for another VC from this ${short}`);
      return;
    }
    const route: VcRoute = {
      opener: conn,
      openerVci: vci,
      acceptor: undefined,
      acceptorVci: 0,
      dst: open.dst.toString(),
      src: open.src.toString(),
      charge,
      resolving: undefined,
      accepted: false,
      toAcceptor: undefined!,
      toOpener: undefined!,
      reserved: 0,
      openTimer: undefined,
      openedAt: Date.now(),
      closed: false,
    };
    // The opener may send once VcAccepted grants it the proxy's window; the acceptor at once.
    route.toAcceptor = this.direction(route, true, 0, 0);
    route.toOpener = this.direction(route, false, initial, open.window);
    this.reserve(route);
    conn.vcs.set(vci, { route, opener: true });
    conn.opened++;
    this.host.vcsChanged(conn);
    route.openTimer = setTimeout(() => {
      route.openTimer = undefined;
      this.closeRoute(route, Reason.Timeout, `server ${open.dst} did not answer the VC within ${this.options.vcOpenTimeout} ms`);
    }, this.options.vcOpenTimeout);
    route.openTimer.unref();
    // Rebuilt without the token MAC (a server has no business with the dial token), and with the
    // proxy's window: the acceptor's credit is the proxy's to give.
    const forwarded = encodeOpenVc({ dst: open.dst, src: open.src, srcPublicKey: open.srcPublicKey, window: initial });
    if (target !== undefined) this.attach(route, target, forwarded);
    else this.resolve(route, remote!, open.dst, forwarded);
  }

  /** Sends the VC on to its acceptor: from now on frames travel both ways. */
  private attach(route: VcRoute, acceptor: ProxyConnection, openVc: Buffer): void {
    route.acceptor = acceptor;
    route.acceptorVci = acceptor.hop.allocateVci();
    acceptor.vcs.set(route.acceptorVci, { route, opener: false });
    this.host.vcsChanged(acceptor);
    acceptor.hop.send(FrameType.OpenVc, route.acceptorVci, openVc);
  }

  /** Asks the remote routes where `dst` is; the VC waits without an acceptor meanwhile (its open timeout still runs). */
  private resolve(route: VcRoute, remote: RemoteRoutes, dst: RoutingId, openVc: Buffer): void {
    const resolving = new AbortController();
    route.resolving = resolving;
    const refuse = (reason: Reason, message: string): void => {
      if (route.closed) return;
      this.counters.vcsRejected++;
      this.refusedEvent(route.opener, route.src, route.dst, reason, message);
      if (this.attached(route, true)) route.opener.hop.send(FrameType.VcRejected, route.openerVci, encodeReason(reason, message));
      this.forget(route, 'proxy', { reason, message }, false);
    };
    remote.resolve(dst, resolving.signal).then(
      (found) => {
        route.resolving = undefined;
        if (route.closed) return;
        if ('refused' in found) {
          refuse(found.refused.reason, found.refused.message);
          return;
        }
        const link = found.connection;
        if (!link.hop.isOpen || link.hop.localGoAway || link.hop.peerGoAway) {
          refuse(Reason.Unreachable, `the connection to cluster proxy ${link.identity}, which holds ${route.dst}, closed before the VC could be forwarded`);
          return;
        }
        this.attach(route, link, openVc);
      },
      (err: unknown) => {
        route.resolving = undefined;
        refuse(Reason.Internal, `proxy ${this.endpoint} failed to find routing id ${route.dst} in its cluster: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  }

  private refusedEvent(conn: ProxyConnection, src: string, dst: string, reason: Reason, message: string): void {
    this.host.events.emit('refused', {
      kind: 'vc',
      code: codeForReason(reason),
      reason: message,
      address: conn.hop.peerLabel,
      addressGroup: conn.group,
      routingId: src,
      destination: dst,
      ...(conn.member && { clientProxy: conn.identity }),
    });
  }

  accepted(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    if (side.opener || route.accepted) {
      throw new ProtocolError('ERR_PROTOCOL', `VcAccepted for VC id ${frame.vci}, which is not awaiting acceptance from this side`);
    }
    const { window, publicKey } = decodeVcAccepted(payloadOf(frame));
    // A cluster member vouches for the key its server proved to it; it must at least be the destination's.
    if (conn.member ? RoutingId.fromPublicKey(publicKey).toString() !== route.dst : !publicKey.equals(conn.hop.peerPublicKey)) {
      const whose = conn.member ? `the destination ${route.dst}'s` : `the one ${conn.hop.peerLabel} proved`;
      throw new ProtocolError('ERR_PROTOCOL', `VcAccepted carries a public key other than ${whose}`);
    }
    if (window === 0 || window > MAX_VC_WINDOW) {
      throw new ProtocolError('ERR_PROTOCOL', `VcAccepted announces a window of ${window} bytes (allowed: 1-${MAX_VC_WINDOW})`);
    }
    route.accepted = true;
    clearTimeout(route.openTimer);
    route.openTimer = undefined;
    const toAcceptor = route.toAcceptor;
    toAcceptor.receiverCredit = window;
    toAcceptor.senderCredit = toAcceptor.window.size;
    route.opener.hop.send(FrameType.VcAccepted, route.openerVci, encodeVcAccepted(toAcceptor.senderCredit, publicKey));
    this.host.events.emit('vcOpened', vcEnds(route));
  }

  data(conn: ProxyConnection, frame: Frame): void {
    const dir = this.directionOf(conn, frame, true);
    if (dir === undefined) return;
    const length = frame.length;
    if (length > dir.senderCredit) {
      throw new ProtocolError('ERR_PROTOCOL', `${conn.hop.peerLabel} sent a ${length}-byte Data frame with only ${dir.senderCredit} bytes of credit`);
    }
    dir.senderCredit -= length;
    dir.window.touch();
    conn.bytesIn += length;
    const receiver = this.receiverOf(dir);
    // Only an empty frame gets here before the VC has an acceptor: its opener has no credit yet.
    if (receiver === undefined) return;
    if (dir.queued === 0 && length <= dir.receiverCredit && !receiver.hop.congested) {
      // The common case: straight through, as the frame came.
      this.forward(dir, frame.parts, length);
    } else {
      for (const part of frame.parts) this.enqueue(dir, part);
      this.flush(dir);
    }
    this.grant(dir);
  }

  credit(conn: ProxyConnection, frame: Frame): void {
    // A receiver's Credit lets the proxy forward more toward it.
    const dir = this.directionOf(conn, frame, false);
    if (dir === undefined) return;
    const amount = decodeCredit(payloadOf(frame));
    if (dir.receiverCredit + amount > MAX_VC_WINDOW) {
      throw new ProtocolError('ERR_PROTOCOL', `${conn.hop.peerLabel} granted ${dir.receiverCredit + amount} bytes of credit, more than the largest VC window of ${MAX_VC_WINDOW} bytes`);
    }
    dir.receiverCredit += amount;
    if (dir.queued > 0) {
      this.flush(dir);
      this.grant(dir);
    }
  }

  /** A receiver asks back credit the proxy has not used toward it: give back what is left, up to the amount. */
  creditRevoke(conn: ProxyConnection, frame: Frame): void {
    const dir = this.directionOf(conn, frame, false);
    if (dir === undefined) return;
    const returned = Math.min(decodeCreditRevoke(payloadOf(frame)), dir.receiverCredit);
    dir.receiverCredit -= returned;
    conn.hop.send(FrameType.CreditReturn, frame.vci, encodeWindow(returned));
  }

  /** A sender gave back credit the proxy revoked: the reservation shrinks with it. */
  creditReturn(conn: ProxyConnection, frame: Frame): void {
    const dir = this.directionOf(conn, frame, true);
    if (dir === undefined) return;
    const amount = decodeCreditReturn(payloadOf(frame));
    if (!dir.revoking || amount > dir.senderCredit) {
      throw new ProtocolError('ERR_PROTOCOL', `${conn.hop.peerLabel} returned ${amount} bytes of credit on VC id ${frame.vci}, which it was not asked for or does not have`);
    }
    dir.revoking = false;
    dir.senderCredit -= amount;
    this.reserve(dir.route);
  }

  private direction(route: VcRoute, toAcceptor: boolean, senderCredit: number, receiverCredit: number): VcDirection {
    const initial = this.initialWindow();
    const window = new ReceiveWindow(initial, Math.max(initial, this.options.maxVcWindow), (growth) => {
      if (this.budgetShortfall(route.charge, growth) !== undefined) return false;
      this.grown.add(route);
      this.armSweep();
      return true;
    });
    const dir: VcDirection = { route, toAcceptor, senderCredit, receiverCredit, queue: [], queued: 0, window, revoking: false, closing: undefined, drainWaiter: undefined!, forwarded: 0 };
    dir.drainWaiter = {
      onDrain: () => {
        this.flush(dir, 1);
        this.grant(dir);
      },
    };
    return dir;
  }

  private initialWindow(): number {
    return Math.min(DEFAULT_VC_WINDOW, this.options.maxVcWindow);
  }

  /** The connection a direction delivers to; the acceptor's is undefined while the VC waits for a remote route. */
  private receiverOf(dir: VcDirection): ProxyConnection | undefined {
    return dir.toAcceptor ? dir.route.acceptor : dir.route.opener;
  }

  private forward(dir: VcDirection, parts: readonly Buffer[], length: number): void {
    const receiver = this.receiverOf(dir)!;
    dir.receiverCredit -= length;
    dir.forwarded += length;
    receiver.bytesOut += length;
    this.counters.bytesForwarded += length;
    if (dir.toAcceptor) this.counters.bytesToServers += length;
    receiver.hop.send(FrameType.Data, dir.toAcceptor ? dir.route.acceptorVci : dir.route.openerVci, parts.length === 1 ? parts[0] : parts);
    const buffered = receiver.hop.bufferedBytes;
    if (buffered > this.counters.peakConnectionBufferedBytes) this.counters.peakConnectionBufferedBytes = buffered;
  }

  private enqueue(dir: VcDirection, part: Buffer): void {
    if (part.length === 0) return;
    // A small piece of a large socket read would keep the whole read alive while it waits.
    dir.queue.push(part.length * 2 < part.buffer.byteLength ? Buffer.from(part) : part);
    dir.queued += part.length;
    this.counters.queuedBytes += part.length;
    if (this.counters.queuedBytes > this.counters.peakQueuedBytes) this.counters.peakQueuedBytes = this.counters.queuedBytes;
  }

  /**
   * Forwards queued bytes while the receiver has credit and its socket room, in frames of at
   * most MAX_DATA_FRAME (at most `frames` of them); then a pending clean close, once all is out.
   */
  private flush(dir: VcDirection, frames = Infinity): void {
    const receiver = this.receiverOf(dir);
    if (receiver === undefined) return;
    while (dir.queued > 0 && dir.receiverCredit > 0) {
      if (frames-- === 0 || receiver.hop.congested) {
        receiver.hop.waitForDrain(dir.drainWaiter);
        return;
      }
      const budget = Math.min(dir.receiverCredit, MAX_DATA_FRAME, dir.queued);
      const parts: Buffer[] = [];
      let size = 0;
      while (size < budget) {
        const part = dir.queue[0];
        const take = Math.min(part.length, budget - size);
        if (take === part.length) dir.queue.shift();
        else dir.queue[0] = part.subarray(take);
        parts.push(take === part.length ? part : part.subarray(0, take));
        size += take;
      }
      dir.queued -= size;
      this.counters.queuedBytes -= size;
      this.forward(dir, parts, size);
    }
    if (dir.queued === 0 && dir.closing !== undefined) {
      const payload = dir.closing;
      dir.closing = undefined;
      receiver.hop.send(FrameType.CloseVc, dir.toAcceptor ? dir.route.acceptorVci : dir.route.openerVci, payload);
      this.forget(dir.route, dir.toAcceptor ? 'client' : 'server', closeReason(payload));
    }
  }

  /**
   * Tops the sender's credit up to the window, less what is queued: batched to a quarter
   * window, as a VC end does. The window grows here when the sender's path calls for it.
   */
  private grant(dir: VcDirection): void {
    // No credit for a sender that has closed its end (it is draining), or before it may send.
    if (dir.closing !== undefined || !dir.route.accepted || !this.attached(dir.route, dir.toAcceptor)) return;
    const window = dir.window.size;
    const room = (size: number): number => size - dir.senderCredit - dir.queued;
    let amount = room(window);
    if (amount < window / 4) return;
    const sender = dir.toAcceptor ? dir.route.opener : dir.route.acceptor!;
    // With bytes still queued the receiver is what holds the sender back: no growth then.
    const tuned = dir.window.beforeGrant(amount, dir.queued === 0 ? sender.hop.baseRtt : undefined);
    if (tuned !== window) amount = room(tuned);
    dir.senderCredit += amount;
    sender.hop.send(FrameType.Credit, dir.toAcceptor ? dir.route.openerVci : dir.route.acceptorVci, encodeCredit(amount));
    this.reserve(dir.route);
  }

  close(conn: ProxyConnection, frame: Frame): void {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return;
    const { route } = side;
    if (frame.type === FrameType.VcRejected && (side.opener || route.accepted)) {
      throw new ProtocolError('ERR_PROTOCOL', `VcRejected for VC id ${frame.vci}, which is not awaiting acceptance from this side`);
    }
    const dir = side.opener ? route.toAcceptor : route.toOpener;
    const why = closeReason(payloadOf(frame));
    if (frame.type === FrameType.CloseVc && route.accepted && dir.queued > 0 && why.reason === Reason.Normal) {
      // A clean close follows the data the sender sent before it; the sender is done with the VC.
      dir.closing = Buffer.from(payloadOf(frame));
      this.detach(conn, frame.vci);
      this.host.vcsChanged(conn);
      return;
    }
    const peer = side.opener ? route.acceptor : route.opener;
    const type = frame.type === FrameType.CloseVc && !side.opener && !route.accepted ? FrameType.VcRejected : frame.type;
    // The peer may have closed its end already, with data still draining toward this side (or,
    // for a VC still looking for its remote route, have none yet).
    if (this.attached(route, !side.opener)) peer!.hop.send(type, side.opener ? route.acceptorVci : route.openerVci, frame.parts);
    if (frame.type === FrameType.VcRejected) this.counters.vcsRejected++;
    this.forget(route, side.opener ? 'client' : 'server', why);
  }

  /** The direction of the frame's VC that `conn` sends on (`sending`) or receives on; undefined as for sideOf. */
  private directionOf(conn: ProxyConnection, frame: Frame, sending: boolean): VcDirection | undefined {
    const side = this.sideOf(conn, frame.vci);
    if (side === undefined) return undefined;
    return side.opener === sending ? side.route.toAcceptor : side.route.toOpener;
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

  /** Closes a VC on both sides with a reason (e.g. a limit the acceptor broke). */
  private closeRoute(route: VcRoute, reason: Reason, message: string): void {
    const payload = encodeReason(reason, message);
    if (this.attached(route, true)) route.opener.hop.send(route.accepted ? FrameType.CloseVc : FrameType.VcRejected, route.openerVci, payload);
    if (this.attached(route, false)) route.acceptor!.hop.send(FrameType.CloseVc, route.acceptorVci, payload);
    this.forget(route, 'proxy', { reason, message });
  }

  /** Whether the opener's (or the acceptor's) end of `route` is still open: it has not closed it cleanly while data drains. */
  private attached(route: VcRoute, opener: boolean): boolean {
    const conn = opener ? route.opener : route.acceptor;
    return conn?.vcs.get(opener ? route.openerVci : route.acceptorVci)?.route === route;
  }

  /** Removes one connection's end of a VC. */
  private detach(conn: ProxyConnection, vci: number): void {
    const side = conn.vcs.get(vci);
    if (side === undefined || !conn.vcs.delete(vci)) return;
    if (side.opener) conn.opened--;
    const dir = side.opener ? side.route.toOpener : side.route.toAcceptor;
    conn.hop.cancelDrain(dir.drainWaiter);
  }

  /**
   * Drops a VC from the table, and reports its close (once) with who ended it and why; a VC
   * refused before it left this proxy (`report` false) was reported as a refusal instead.
   */
  private forget(route: VcRoute, closedBy: ProxyVcClosedEvent['closedBy'], why: { reason: number; message: string }, report = true): void {
    if (route.closed) return;
    route.closed = true;
    clearTimeout(route.openTimer);
    route.resolving?.abort();
    route.resolving = undefined;
    const { acceptor } = route;
    this.detach(route.opener, route.openerVci);
    if (acceptor !== undefined) this.detach(acceptor, route.acceptorVci);
    for (const dir of [route.toAcceptor, route.toOpener]) {
      this.counters.queuedBytes -= dir.queued;
      dir.queue = [];
      dir.queued = 0;
      dir.closing = undefined;
    }
    this.grown.delete(route);
    this.adjustReservation(route, 0);
    this.host.vcsChanged(route.opener);
    if (acceptor !== undefined && acceptor !== route.opener) this.host.vcsChanged(acceptor);
    if (!report) return;
    this.host.events.emit('vcClosed', {
      ...vcEnds(route),
      accepted: route.accepted,
      bytesToServer: route.toAcceptor.forwarded,
      bytesToClient: route.toOpener.forwarded,
      durationMs: Date.now() - route.openedAt,
      code: codeForReason(why.reason),
      reason: why.message,
      closedBy,
    });
  }

  /** Charges the route's directions: each its window, or what it holds and granted if that is more (a window that just shrank). */
  private reserve(route: VcRoute): void {
    let amount = 0;
    for (const dir of [route.toAcceptor, route.toOpener]) amount += Math.max(dir.window.size, dir.senderCredit + dir.queued);
    this.adjustReservation(route, amount);
  }

  private armSweep(): void {
    if (this.sweepTimer !== undefined) return;
    this.sweepTimer = setInterval(() => {
      // Idle windows fall back to their floor when read. Credit the sender still holds beyond it
      // stays reserved until the sender gives it back, so the proxy asks for it.
      for (const route of this.grown) {
        let settled = true;
        for (const dir of [route.toAcceptor, route.toOpener]) {
          const floor = dir.window.floor;
          if (dir.window.size > floor || dir.revoking) {
            settled = false;
            continue;
          }
          const excess = Math.min(dir.senderCredit, dir.senderCredit + dir.queued - floor);
          if (excess > 0 && route.accepted && dir.closing === undefined && this.attached(route, dir.toAcceptor)) {
            dir.revoking = true;
            settled = false;
            const sender = dir.toAcceptor ? route.opener : route.acceptor!;
            sender.hop.send(FrameType.CreditRevoke, dir.toAcceptor ? route.openerVci : route.acceptorVci, encodeWindow(excess));
          }
        }
        this.reserve(route);
        if (settled) this.grown.delete(route);
      }
      if (this.grown.size === 0) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = undefined;
      }
    }, WINDOW_IDLE_MS);
    this.sweepTimer.unref();
  }

  /**
   * Which budget `extra` more bytes of windows for a VC opened by `opener` would exceed: the
   * global one, or the share of its connection, identity or address group; undefined when all
   * fit. Reservations are charged to the opener, so one peer cannot spend another's share,
   * whatever number of VCs it opens or connections it makes.
   */
  private budgetShortfall(charge: VcCharge, extra: number): string | undefined {
    const o = this.options;
    if (charge.connection !== undefined && charge.connection.openedReserved + extra > o.connectionBufferBudget) return 'connection';
    if (this.reservedByIdentity.get(charge.identity) + extra > o.identityBufferBudget) return 'routing id';
    if (charge.group !== undefined && this.reservedByGroup.get(charge.group) + extra > o.addressBufferBudget) return 'address';
    if (this.reserved + extra > o.bufferBudget) return 'proxy';
    return undefined;
  }

  private adjustReservation(route: VcRoute, amount: number): void {
    const delta = amount - route.reserved;
    route.reserved = amount;
    this.reserved += delta;
    const { charge } = route;
    this.reservedByIdentity.add(charge.identity, delta);
    if (charge.group !== undefined) this.reservedByGroup.add(charge.group, delta);
    if (charge.connection !== undefined) charge.connection.openedReserved += delta;
  }

  /** Closes every VC of `conn` on both of its ends with `reason` (a proxy shutting down). */
  closeAll(conn: ProxyConnection, reason: Reason, message: string): void {
    for (const { route } of [...conn.vcs.values()]) this.closeRoute(route, reason, message);
  }

  /** Closes every VC of a connection that is gone, telling the other end of each why. */
  dropConnection(conn: ProxyConnection, err: RidproxyError | undefined): void {
    const why = err?.code === 'ERR_SUPERSEDED' ? 'was superseded by a newer connection' : 'was lost';
    for (const { route, opener } of [...conn.vcs.values()]) {
      const role = opener ? 'client' : 'server';
      const message = conn.member
        ? `the connection between proxy ${this.endpoint} and cluster proxy ${conn.identity}, which carried this VC, ${why}`
        : `${role} connection of ${conn.hop.peerRoutingId} to proxy ${this.endpoint} ${why}`;
      const payload = encodeReason(Reason.ConnectionLost, message);
      if (opener) {
        if (this.attached(route, false)) route.acceptor!.hop.send(FrameType.CloseVc, route.acceptorVci, payload);
      } else if (this.attached(route, true)) {
        route.opener.hop.send(route.accepted ? FrameType.CloseVc : FrameType.VcRejected, route.openerVci, payload);
      }
      this.forget(route, role, { reason: Reason.ConnectionLost, message });
    }
  }
}

function vcEnds(route: VcRoute): ProxyVcEvent {
  const { opener, acceptor } = route;
  return {
    client: route.src,
    clientAddress: opener.hop.peerLabel,
    server: route.dst,
    serverAddress: acceptor?.hop.peerLabel ?? '',
    ...(opener.member && { clientProxy: opener.identity }),
    ...(acceptor?.member && { serverProxy: acceptor.identity }),
  };
}

/** The reason a CloseVc or VcRejected carries, for the VC's close event; one too short to hold one is forwarded as it is, and reported as a protocol error. */
function closeReason(payload: Buffer): { reason: number; message: string } {
  return payload.length >= 2 ? decodeReason(payload) : { reason: Reason.Protocol, message: 'the close carried no reason' };
}
