import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import {
  AuthenticationError,
  ConnectionClosedError,
  ProtocolError,
  Reason,
  RidproxyError,
  TimeoutError,
} from '../errors.js';
import type { Identity } from '../id/identity.js';
import { RoutingId } from '../id/routing-id.js';
import {
  DEFAULT_MAX_PAYLOAD,
  FrameDecoder,
  FrameType,
  MAX_HANDSHAKE_PAYLOAD,
  NONCE_SIZE,
  decodeHello,
  decodeReason,
  encodeHeader,
  encodeHello,
  encodePreface,
  encodeReason,
  payloadOf,
  type Frame,
  type Hello,
} from '../wire/index.js';
import { deriveTokenKey, generateEphemeral, signProof, tokenMac, tokenMacMatches, transcriptHash, verifyProof, type EphemeralKey, type HopRole, type TokenPurpose } from './handshake.js';
import type { SocketReads } from './socket-reads.js';

/**
 * Round trips measured back to back when a connection's first VC opens. The first is slow (code
 * not yet optimised, the peer perhaps still busy with its side of the handshake); the least of a
 * few, taken while every window is at its floor and can queue little, is the path's (baseRtt).
 */
export const STARTUP_PINGS = 3;

export interface HopConnectionOptions {
  socket: Socket;
  identity: Identity;
  /** True on the side that opened the TCP connection: it allocates odd VC ids, the other side even ones. */
  initiator: boolean;
  maxPayload?: number;
  /** Milliseconds the peer has to complete preface, hello and proof. */
  handshakeTimeout?: number;
  /** Milliseconds between keepalive pings; 0 disables them. */
  keepAliveInterval?: number;
  /** Milliseconds without any frame from the peer, once a ping is outstanding, before the connection is declared dead. */
  keepAliveTimeout?: number;
  /**
   * Bytes queued for a peer that is not reading before the connection is dropped (see
   * `outputLimit`). Default: CONTROL_SLACK + DATA_HIGH_WATER + the largest payload.
   */
  maxBufferedBytes?: number;
  /** Human name of the peer for error messages, e.g. "proxy 127.0.0.1:8100". */
  peerLabel?: string;
  /**
   * The routing ID the peer must prove (the one pinned in the endpoint). A peer whose Hello
   * presents another key is refused before this side sends its proof.
   */
  expectedPeer?: RoutingId;
  /** Set when `socket` was dialed with `reads.onread`: its bytes come from there, not from 'data'. */
  reads?: SocketReads;
}

export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;
export const DEFAULT_KEEPALIVE_INTERVAL = 15_000;

const PING_SIZE = 8;
/** Milliseconds a destroyed or failed connection has to deliver what was queued before its socket is dropped. */
export const DESTROY_LINGER = 1000;
/** Bytes of control replies (pongs, refusals, status) a peer may leave unread on top of the data its VCs may queue. */
export const CONTROL_SLACK = 1 << 20;
/**
 * Bytes in the socket's buffer (written, not yet taken by the kernel) beyond which Data frames
 * wait for it to drain (`congested`, `waitForDrain`), in their VC's own queue and within its
 * credit. The kernel's send buffer carries what is in flight; this only keeps the socket busy.
 */
export const DATA_HIGH_WATER = 256 * 1024;

/** A VC end (or a proxy's VC direction) with Data frames waiting for a congested connection. */
export interface DrainWaiter {
  /** The socket has room: send at most one frame, and wait again if more remains. */
  onDrain(): void;
}

/**
 * One TCP connection speaking the hop protocol, after both sides proved their keys.
 * Owners (the proxy, or a process's manager) set `onFrame` and handle VC frames; this class
 * handles the connection-level ones: ping/pong, go-away, and protocol errors.
 */
export class HopConnection extends EventEmitter {
  readonly socket: Socket;
  readonly peerPublicKey: Buffer;
  readonly peerRoutingId: RoutingId;
  readonly peerLabel: string;
  /** Resolves when the connection ends: undefined after a clean local close, the error otherwise. Never rejects. */
  readonly closed: Promise<RidproxyError | undefined>;

  /** Set once the peer announced it is going away: no new VCs may be opened on this connection. */
  peerGoAway: ConnectionClosedError | undefined;
  /** Set once this side announced it is going away. */
  localGoAway = false;

  private onFrame: ((frame: Frame) => void) | undefined;
  private peerHighestVci = 0;
  /**
   * Bytes queued for the peer beyond which it is taken to have stopped reading, and dropped.
   * Data waits for the socket past DATA_HIGH_WATER, but replies to control frames (pongs,
   * refusals, status) do not: without this, a peer that sends and never reads would grow our heap.
   */
  outputLimit: number;
  /** Served in turn, one frame each, whenever the socket drains. */
  private readonly drainWaiters = new Set<DrainWaiter>();
  private overflowing = false;
  private started = false;
  /** Frames that arrive before the owner calls start(); the handshake can deliver some in the proof's chunk. */
  private pending: Frame[] = [];

  private readonly decoder: FrameDecoder;
  private nextVciValue: number;
  private corked = false;
  private closeError: RidproxyError | undefined;
  private isClosed = false;
  private resolveClosed!: (err: RidproxyError | undefined) => void;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private pingSentAt = 0;
  /** Pings still to send back to back, each when the last came back (see STARTUP_PINGS). */
  private startupPingsLeft = 0;
  private rttMeasurementStarted = false;
  private lastFrameAt = performance.now();
  private rttMs: number | undefined;
  private baseRttMs: number | undefined;
  private readonly keepAliveInterval: number;
  private readonly keepAliveTimeout: number;
  private readonly localRoutingId: RoutingId;
  /** Keys token MACs; derived from this connection's authenticated key exchange, known only to its two ends. */
  private readonly tokenKey: Buffer;

  private constructor(options: HopConnectionOptions, decoder: FrameDecoder, peerPublicKey: Buffer, tokenKey: Buffer) {
    super();
    this.tokenKey = tokenKey;
    this.socket = options.socket;
    this.decoder = decoder;
    this.peerPublicKey = peerPublicKey;
    this.peerRoutingId = RoutingId.fromPublicKey(peerPublicKey);
    this.peerLabel = options.peerLabel ?? `${this.socket.remoteAddress}:${this.socket.remotePort}`;
    this.localRoutingId = options.identity.routingId;
    this.nextVciValue = options.initiator ? 1 : 2;
    this.keepAliveInterval = options.keepAliveInterval ?? DEFAULT_KEEPALIVE_INTERVAL;
    this.keepAliveTimeout = options.keepAliveTimeout ?? this.keepAliveInterval * 2;
    this.outputLimit = options.maxBufferedBytes ?? CONTROL_SLACK + DATA_HIGH_WATER + (options.maxPayload ?? DEFAULT_MAX_PAYLOAD);
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.socket.on('end', () => {
      if (!this.decoder.atBoundary) {
        this.failProtocol(new ProtocolError('ERR_PROTOCOL', `${this.peerLabel} closed the connection in the middle of a frame`));
      }
    });
    // Errors are built only when they will be used: capturing a stack is not free, and most closes are orderly.
    this.socket.on('drain', () => this.serveDrainWaiters());
    this.socket.on('close', () => {
      if (!this.isClosed) this.finish(new ConnectionClosedError(Reason.ConnectionLost, `connection to ${this.peerLabel} closed`));
    });
    this.socket.on('error', (err) => {
      if (!this.isClosed) this.finish(new ConnectionClosedError(Reason.ConnectionLost, `connection to ${this.peerLabel} failed: ${err.message}`));
    });
    if (this.keepAliveInterval > 0) this.scheduleKeepAlive();
  }

  /**
   * Runs the handshake on a connected socket: both sides send the preface and a Hello (static
   * key, ephemeral X25519 key, nonce), then sign the hash of both Hellos under their role's label.
   * Rejects with a typed error if the peer is not a ridproxy peer, speaks no common version, is
   * not `expectedPeer`, fails the proof, or is too slow. Nothing secret is sent before the peer's
   * proof is verified; the connection's token key comes from the authenticated exchange.
   */
  static establish(options: HopConnectionOptions): Promise<HopConnection> {
    const { socket, identity } = options;
    const label = options.peerLabel ?? `${socket.remoteAddress}:${socket.remotePort}`;
    const role: HopRole = options.initiator ? 'initiator' : 'responder';
    const peerRole: HopRole = options.initiator ? 'responder' : 'initiator';
    const { reads } = options;
    const onBytes = (handler: (chunk: Buffer) => void): void => {
      if (reads !== undefined) reads.handler = handler;
      else socket.on('data', handler);
    };
    // The responder makes its key and Hello only once the initiator's Hello has arrived: a scan,
    // a probe or a silent connection then costs it no key generation and no signature.
    let ephemeral: EphemeralKey | undefined;
    let ownHello: Buffer | undefined;
    const hello = (): Buffer => {
      ephemeral = generateEphemeral();
      ownHello = encodeHello(identity.publicKey, ephemeral.publicKey, randomBytes(NONCE_SIZE));
      return ownHello;
    };
    // Stays for the socket's life: after a failed handshake the socket lingers to deliver the
    // GoAway, and a write to a peer that has reset must not become an uncaught 'error'.
    socket.on('error', ignoreSocketError);
    return new Promise<HopConnection>((resolve, reject) => {
      let peerHello: Hello | undefined;
      let transcript: Buffer | undefined;
      let settled = false;
      let connection: HopConnection | undefined;
      // The responder's preface waits for the initiator's Hello and leaves with its own Hello and
      // Proof: one write for the whole of its side, and nothing at all for a probe.
      let prefaceSent = options.initiator;

      const fail = (err: RidproxyError): void => {
        if (settled) return;
        settled = true;
        cleanup();
        if (!(err instanceof ConnectionClosedError) && socket.writable) {
          const reason = err instanceof AuthenticationError ? Reason.Authentication : err instanceof TimeoutError ? Reason.Timeout : Reason.Protocol;
          const goAway = frameBytes(FrameType.GoAway, 0, encodeReason(reason, err.message));
          // The peer reads a GoAway only after a preface.
          socket.end(prefaceSent ? goAway : Buffer.concat([encodePreface(), goAway]));
          socket.destroySoon();
        } else {
          socket.destroy();
        }
        reject(err);
      };
      const refusal = (frame: Frame): ConnectionClosedError => {
        const { reason, message } = decodeReason(payloadOf(frame));
        return new ConnectionClosedError(reason, `${label} refused the connection: ${message}`);
      };
      const decoder = new FrameDecoder({
        // Until the peer is authenticated, nothing larger than a handshake frame is buffered.
        maxPayload: Math.min(MAX_HANDSHAKE_PAYLOAD, options.maxPayload ?? DEFAULT_MAX_PAYLOAD),
        // The decoder negotiates the version itself and fails with ERR_UNSUPPORTED_VERSION.
        onPreface: () => undefined,
        onFrame: (frame) => {
          if (connection) {
            connection.dispatch(frame);
            return;
          }
          if (frame.type === FrameType.GoAway) throw refusal(frame);
          if (!peerHello) {
            if (frame.type !== FrameType.Hello) {
              throw new ProtocolError('ERR_PROTOCOL', `${label} sent frame type ${frame.type} before completing the handshake`);
            }
            const peer = decodeHello(payloadOf(frame));
            // Our own key coming back is a reflection of our Hello; the role labels make its proof useless, but say so plainly.
            if (peer.publicKey.equals(identity.publicKey)) {
              throw new AuthenticationError(`${label} presented this process's own public key; refusing a reflected handshake`);
            }
            const claimed = RoutingId.fromPublicKey(peer.publicKey);
            if (options.expectedPeer !== undefined && !options.expectedPeer.isNull() && !claimed.equals(options.expectedPeer)) {
              throw new AuthenticationError(`${label} presents routing id ${claimed}, not the expected ${options.expectedPeer}`);
            }
            peerHello = peer;
            if (options.initiator) {
              transcript = transcriptHash(ownHello!, peer.bytes);
              // Held until the check phase of this turn of the event loop: the owner's first
              // frames (a Register, an OpenVc), sent as soon as this resolves, then leave with
              // the Proof in one write, and the responder gets them in one read.
              socket.cork();
              socket.write(frameBytes(FrameType.Proof, 0, signProof(identity, role, transcript)));
              setImmediate(() => socket.uncork());
            } else {
              const own = hello();
              transcript = transcriptHash(peer.bytes, own);
              prefaceSent = true;
              socket.cork();
              socket.write(encodePreface());
              socket.write(frameBytes(FrameType.Hello, 0, own));
              socket.write(frameBytes(FrameType.Proof, 0, signProof(identity, role, transcript)));
              socket.uncork();
            }
            return;
          }
          if (frame.type !== FrameType.Proof) {
            throw new ProtocolError('ERR_PROTOCOL', `${label} sent frame type ${frame.type} instead of its identity proof`);
          }
          if (!verifyProof(peerHello, peerRole, transcript!, payloadOf(frame))) {
            throw new AuthenticationError(`${label} failed to prove it holds the key for routing id ${RoutingId.fromPublicKey(peerHello.publicKey)}`);
          }
          const tokenKey = deriveTokenKey(ephemeral!, peerHello.ephemeralKey, transcript!);
          decoder.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
          connection = new HopConnection({ ...options, peerLabel: label }, decoder, peerHello.publicKey, tokenKey);
        },
      });

      const onData = (chunk: Buffer): void => {
        try {
          decoder.push(chunk);
        } catch (err) {
          fail(asRidproxyError(err));
          return;
        }
        if (connection && !settled) {
          settled = true;
          cleanup();
          const established = connection;
          onBytes((next: Buffer) => established.receive(next));
          resolve(established);
        }
      };
      const onClose = (): void => fail(new ConnectionClosedError(Reason.ConnectionLost, `${label} closed the connection during the handshake`));
      const onError = (err: Error): void => fail(new ConnectionClosedError(Reason.ConnectionLost, `connection to ${label} failed during the handshake: ${err.message}`));
      const timer = setTimeout(
        () => fail(new TimeoutError(`${label} did not complete the handshake within ${options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT} ms`)),
        options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
      );
      const cleanup = (): void => {
        clearTimeout(timer);
        if (reads !== undefined) reads.handler = ignoreBytes;
        else socket.off('data', onData);
        socket.off('close', onClose);
        socket.off('error', onError);
      };
      onBytes(onData);
      socket.on('close', onClose);
      socket.on('error', onError);
      socket.setNoDelay(true);
      if (options.initiator) socket.write(Buffer.concat([encodePreface(), frameBytes(FrameType.Hello, 0, hello())]));
    });
  }

  /** The MAC that presents `token` for `purpose` on this connection (on VC `vci` for a dial, else 0). */
  tokenMac(purpose: TokenPurpose, vci: number, token: string): Buffer {
    return tokenMac(this.tokenKey, purpose, vci, token);
  }

  /** Whether `presented` is this connection's MAC of `token` for `purpose`, compared in constant time. */
  tokenMatches(purpose: TokenPurpose, vci: number, token: string, presented: Buffer): boolean {
    return tokenMacMatches(this.tokenKey, purpose, vci, token, presented);
  }

  /** Starts delivering VC and registration frames to `handler`, beginning with any that arrived early. */
  start(handler: (frame: Frame) => void): void {
    this.onFrame = handler;
    this.started = true;
    if (this.isClosed) {
      // It failed before its owner listened (a write to a peer that had reset, say): tell it now.
      this.emit('close', this.closeError, false);
      return;
    }
    const early = this.pending;
    this.pending = [];
    for (const frame of early) {
      if (this.isClosed) return;
      this.deliver(frame);
    }
  }

  get routingId(): RoutingId {
    return this.localRoutingId;
  }

  /** Round-trip time in milliseconds of the last ping: the first go out with the connection's first VC, then one per keepalive. */
  get rtt(): number | undefined {
    return this.rttMs;
  }

  /** The least round trip any ping on this connection took: the path's, without the queues the traffic itself builds (ReceiveWindow times windows by it). */
  get baseRtt(): number | undefined {
    return this.baseRttMs;
  }

  /** Bytes written to this connection that the kernel has not yet taken. */
  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  /** True while the socket holds DATA_HIGH_WATER or more: Data frames should wait (waitForDrain). */
  get congested(): boolean {
    return this.socket.writableLength >= DATA_HIGH_WATER;
  }

  /** Calls `waiter.onDrain()` once the socket has room, in turn with the others waiting. */
  waitForDrain(waiter: DrainWaiter): void {
    this.drainWaiters.add(waiter);
  }

  cancelDrain(waiter: DrainWaiter): void {
    this.drainWaiters.delete(waiter);
  }

  private serveDrainWaiters(): void {
    // One frame per waiter per turn, so a bulk VC does not starve the others on the connection.
    while (this.drainWaiters.size > 0 && !this.congested && !this.isClosed) {
      for (const waiter of [...this.drainWaiters]) {
        this.drainWaiters.delete(waiter);
        waiter.onDrain();
        if (this.congested) return;
      }
    }
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** The error the connection ended with, once it has ended. */
  get error(): RidproxyError | undefined {
    return this.closeError;
  }

  /** Allocates a VC id from this side's half of the space; ids are never reused on a connection. */
  allocateVci(): number {
    const vci = this.nextVciValue;
    if (vci > 0xffff_fffe) throw new ProtocolError('ERR_PROTOCOL', `VC ids exhausted on the connection to ${this.peerLabel}`);
    this.nextVciValue += 2;
    this.measureRtt();
    return vci;
  }

  /** True if `vci` was already allocated by the side that owns its parity (so a late frame for it is stale, not bogus). */
  wasAllocated(vci: number): boolean {
    const ownParity = this.nextVciValue % 2;
    if (vci % 2 === ownParity) return vci < this.nextVciValue;
    return vci <= this.peerHighestVci;
  }

  /** Records a VC id the peer allocated (from its OpenVc), enforcing that ids only grow. */
  notePeerVci(vci: number): boolean {
    if (vci % 2 === this.nextVciValue % 2 || vci <= this.peerHighestVci) return false;
    this.peerHighestVci = vci;
    this.measureRtt();
    return true;
  }

  /**
   * Starts the STARTUP_PINGS with the connection's first VC, the first thing whose windows are
   * timed by the round trip. Not at the handshake: most connections only register, and a storm
   * of servers registering again after a proxy restart would pay for pings nothing uses.
   */
  private measureRtt(): void {
    if (this.rttMeasurementStarted) return;
    this.rttMeasurementStarted = true;
    this.startupPingsLeft = STARTUP_PINGS - 1;
    // A keepalive ping on its way counts as the first.
    if (this.pingSentAt === 0) this.ping();
  }

  /** Announces that this side opens and accepts no new VCs; existing ones may finish. */
  goAway(reason: Reason, message: string): void {
    if (this.isClosed || this.localGoAway) return;
    this.localGoAway = true;
    this.send(FrameType.GoAway, 0, encodeReason(reason, message));
  }

  /**
   * Queues a frame. Writes in one tick are corked together so the kernel sees them as one
   * writev; payload buffers are handed over as they are, never copied.
   */
  send(type: FrameType, vci: number, payload?: Buffer | readonly Buffer[]): void {
    if (this.isClosed) return;
    const socket = this.socket;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    if (payload === undefined) {
      socket.write(encodeHeader(type, vci, 0));
    } else if (Buffer.isBuffer(payload)) {
      socket.write(encodeHeader(type, vci, payload.length));
      if (payload.length > 0) socket.write(payload);
    } else {
      let length = 0;
      for (const part of payload) length += part.length;
      socket.write(encodeHeader(type, vci, length));
      for (const part of payload) if (part.length > 0) socket.write(part);
    }
    if (socket.writableLength > this.outputLimit && !this.overflowing) {
      this.overflowing = true;
      // Dropped on the next tick: the caller may be iterating over connections right now.
      process.nextTick(() =>
        this.destroy(new ConnectionClosedError(Reason.Limit, `${this.peerLabel} is not reading: ${socket.writableLength} bytes queued for it, more than ${this.outputLimit}`)),
      );
    }
  }

  /**
   * Tells the peer why, then closes. Frames already queued are still delivered: the socket is
   * ended (which flushes the cork) and dropped once the peer closes too, or once it has read
   * nothing for DEFAULT_HANDSHAKE_TIMEOUT ms.
   */
  close(reason: Reason = Reason.Normal, message = 'closed'): void {
    if (this.isClosed) return;
    if (!this.localGoAway) this.send(FrameType.GoAway, 0, encodeReason(reason, message));
    this.finish(reason === Reason.Normal ? undefined : new ConnectionClosedError(reason, message), true);
    this.socket.end();
    this.socket.setTimeout(DEFAULT_HANDSHAKE_TIMEOUT, () => this.socket.destroy());
  }

  /**
   * Ends the connection at once: nothing more is read or sent. What was already queued (a GoAway,
   * a CloseVc) still goes out, for at most DESTROY_LINGER ms, unless the peer is the reason: one
   * that stopped reading gets nothing more.
   */
  destroy(err?: RidproxyError): void {
    this.finish(err);
    if (this.overflowing) this.socket.destroy();
    else this.linger(DESTROY_LINGER);
  }

  /**
   * Ends the socket, flushing what is queued (end() uncorks), and drops it once the peer closes
   * its side too, or after `ms` if it does not. Destroying at once would discard corked frames,
   * and the peer would see a bare FIN instead of the reason.
   */
  private linger(ms: number): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    if (!socket.writableEnded) socket.end();
    const timer = setTimeout(() => socket.destroy(), ms);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  private receive(chunk: Buffer): void {
    if (this.isClosed) return;
    this.lastFrameAt = performance.now();
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.failProtocol(asRidproxyError(err));
    }
  }

  private dispatch(frame: Frame): void {
    if (this.isClosed) return;
    try {
      switch (frame.type) {
        case FrameType.Ping:
          this.send(FrameType.Pong, 0, payloadOf(frame));
          return;
        case FrameType.Pong:
          if (this.pingSentAt !== 0) {
            this.rttMs = performance.now() - this.pingSentAt;
            this.baseRttMs = Math.min(this.baseRttMs ?? this.rttMs, this.rttMs);
            this.pingSentAt = 0;
            if (this.startupPingsLeft > 0) {
              this.startupPingsLeft--;
              this.ping();
            }
          }
          return;
        case FrameType.GoAway: {
          const { reason, message } = decodeReason(payloadOf(frame));
          this.peerGoAway = new ConnectionClosedError(reason, `${this.peerLabel} is going away: ${message}`);
          this.emit('goaway', this.peerGoAway);
          return;
        }
        case FrameType.Hello:
        case FrameType.Proof:
          throw new ProtocolError('ERR_PROTOCOL', `${this.peerLabel} repeated the handshake on an established connection`);
        default:
          if (this.onFrame) this.deliver(frame);
          else this.pending.push(frame);
      }
    } catch (err) {
      this.failProtocol(asRidproxyError(err));
    }
  }

  private deliver(frame: Frame): void {
    try {
      this.onFrame!(frame);
    } catch (err) {
      this.failProtocol(asRidproxyError(err));
    }
  }

  /** Sends the peer a go-away naming its violation, then drops the connection. */
  failProtocol(err: RidproxyError): void {
    if (this.isClosed) return;
    this.send(FrameType.GoAway, 0, encodeReason(err instanceof ProtocolError || err instanceof AuthenticationError ? Reason.Protocol : Reason.Internal, err.message));
    this.finish(err);
    // Give the go-away a chance to reach the peer; the socket is gone either way.
    this.socket.end();
    this.socket.destroySoon();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private ping(): void {
    this.pingSentAt = performance.now();
    this.send(FrameType.Ping, 0, randomBytes(PING_SIZE));
  }

  private scheduleKeepAlive(): void {
    this.keepAliveTimer = setInterval(() => {
      const now = performance.now();
      if (this.pingSentAt !== 0 && now - Math.max(this.pingSentAt, this.lastFrameAt) >= this.keepAliveTimeout - this.keepAliveInterval) {
        this.destroy(new ConnectionClosedError(Reason.Timeout, `${this.peerLabel} stopped answering keepalive pings`));
        return;
      }
      if (this.pingSentAt === 0) this.ping();
    }, this.keepAliveInterval);
    this.keepAliveTimer.unref();
  }

  private finish(err: RidproxyError | undefined, local = false): void {
    if (this.isClosed) return;
    // A peer that said why it was leaving (superseded, shutting down) is the better explanation.
    if (this.peerGoAway && (err === undefined || err.code === 'ERR_CONNECTION_LOST')) err = this.peerGoAway;
    this.isClosed = true;
    this.closeError = err;
    this.drainWaiters.clear();
    if (this.keepAliveTimer) clearInterval(this.keepAliveTimer);
    this.resolveClosed(err);
    // Before start() the owner may not be listening yet; start() reports it then.
    if (this.started) this.emit('close', err, local);
  }
}

/** Errors a socket reports after its owner has already given up on it (EPIPE, ECONNRESET). */
export function ignoreSocketError(): void {}

/** Where a dialed socket's bytes go once its handshake has failed: the socket is on its way out. */
function ignoreBytes(): void {}

function frameBytes(type: FrameType, vci: number, payload: Buffer): Buffer {
  return Buffer.concat([encodeHeader(type, vci, payload.length), payload]);
}

function asRidproxyError(err: unknown): RidproxyError {
  if (err instanceof RidproxyError) return err;
  return new RidproxyError('ERR_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
}
