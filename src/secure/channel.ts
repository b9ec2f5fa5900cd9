import { Duplex } from 'node:stream';
import { connect as tlsConnect, TLSSocket, type SecureContext } from 'node:tls';
import { AbortError, AuthenticationError, InvalidArgumentError, ProtocolError, RidproxyError, TimeoutError } from '../errors.js';
import { Identity } from '../id/identity.js';
import { RoutingId } from '../id/routing-id.js';
import { certificateKey, secureContextFor } from './certificate.js';
import { FrameReader, FrameType, MAX_PAYLOAD, frameHeader } from './framing.js';

/** Names this protocol inside the TLS handshake, so a peer speaking anything else fails there. */
const ALPN = 'ridproxy-e2e/1';
const DEFAULT_TIMEOUT_MS = 30_000;
/** How long a side that refused (or was refused) waits for the peer to read that and close. */
const LINGER_MS = 2_000;
/** Large enough that one read or write moves several TLS records at a time. */
const HIGH_WATER_MARK = 64 * 1024;
const EMPTY = Buffer.alloc(0);

export interface PeerIdentity {
  /** The peer's raw 32-byte Ed25519 public key. */
  publicKey: Buffer;
  routingId: RoutingId;
}

export interface SecureChannelOptions {
  identity: Identity;
  role: 'dialer' | 'acceptor';
  /**
   * Dialer only: the routing ID it dialed; the handshake fails unless the peer's key hashes to it.
   * Omitted or RoutingId.NULL means whoever answers, as the null RID does in an endpoint.
   */
  expectedRoutingId?: RoutingId;
  /** Optional check on the authenticated peer; return false (or throw) to refuse it. */
  authorize?: (peer: PeerIdentity) => boolean | Promise<boolean>;
  signal?: AbortSignal;
  /** Limit on the whole handshake, authorize included, in ms. Default 30 s. */
  timeout?: number;
}

export interface SecureChannel {
  /** Carries the application's bytes; errors are RidproxyErrors (ERR_INTEGRITY when data was altered). */
  stream: Duplex;
  peerPublicKey: Buffer;
  peerRoutingId: RoutingId;
}

/**
 * Runs a mutually authenticated TLS 1.3 handshake over `transport` (in ridproxy, a VC's byte
 * stream) and resolves to an encrypted stream once both sides have accepted each other.
 *
 * Takes ownership of `transport`: it is ended and destroyed with the returned stream, and destroyed
 * (after a short linger, when the peer is being told why) whenever this function rejects. Rejects with AuthenticationError when the peer cannot be authenticated
 * (or is not the expected routing ID), RidproxyError 'ERR_UNAUTHORIZED' when either side's
 * authorize check refuses the other, TimeoutError, AbortError, or 'ERR_CONNECTION_LOST'.
 */
export async function secureChannel(transport: Duplex, options: SecureChannelOptions): Promise<SecureChannel> {
  const { signal } = options ?? {};
  let timeout: number;
  let secureContext: SecureContext;
  try {
    timeout = checkOptions(options);
    if (signal?.aborted) throw aborted(signal);
    if (transport.destroyed) throw new RidproxyError('ERR_CONNECTION_LOST', 'secure channel: the transport is already closed');
    secureContext = secureContextFor(options.identity);
  } catch (err) {
    transport.destroy();
    throw err;
  }
  // node:tls copies this flag from the stream it wraps; without it, the first 'end' from the
  // peer would also end this side's writing, and half-close would not survive the TLS layer.
  transport.allowHalfOpen = true;
  const common = { secureContext, ALPNProtocols: [ALPN], rejectUnauthorized: false, highWaterMark: HIGH_WATER_MARK };
  // rejectUnauthorized is off because there is no CA: a peer is accepted for its key, which
  // SecureStream checks once the handshake has proved the peer holds it.
  const socket =
    options.role === 'dialer'
      ? tlsConnect({ ...common, socket: transport })
      : new TLSSocket(transport, { ...common, isServer: true, requestCert: true });
  const stream = new SecureStream(socket, options.role);

  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`the secure-channel handshake did not finish within ${timeout} ms`)), timeout);
    if (signal !== undefined) {
      onAbort = () => reject(aborted(signal));
      signal.addEventListener('abort', onAbort, { once: true });
    }
  });
  try {
    const peer = await Promise.race([stream.handshake(options), limit]);
    return { stream, peerPublicKey: peer.publicKey, peerRoutingId: peer.routingId };
  } catch (err) {
    stream.abandon(err as RidproxyError);
    throw err;
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
  }
}

function checkOptions(options: SecureChannelOptions): number {
  if (!(options?.identity instanceof Identity)) throw new InvalidArgumentError('ERR_INVALID_OPTION', 'secure channel: identity must be an Identity');
  if (options.role !== 'dialer' && options.role !== 'acceptor') {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `secure channel: role must be 'dialer' or 'acceptor', got ${JSON.stringify(options.role)}`);
  }
  if (options.expectedRoutingId !== undefined && options.role !== 'dialer') {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', 'secure channel: expectedRoutingId is for the dialer; an acceptor checks its peer with authorize');
  }
  const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `secure channel: timeout must be a positive number of ms, got ${options.timeout}`);
  }
  return timeout;
}

function aborted(signal: AbortSignal): AbortError {
  return new AbortError('the secure-channel handshake was aborted', { cause: signal.reason });
}

/** Peers' reasons are shown to people: keep them to one line of printable text. */
function printable(reason: Buffer): string {
  return reason.toString('latin1').replace(/[^\x20-\x7e]/g, '?');
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

/** Its rejection may come before anyone awaits it, so it is marked handled from the start. */
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

type Phase = 'tls' | 'verdict' | 'open';

/**
 * The application's side of the channel: Data frames in and out of the TLS socket, with the
 * verdict exchange before them and an End frame for each direction's clean end.
 */
class SecureStream extends Duplex {
  readonly #socket: TLSSocket;
  readonly #reader: FrameReader;
  readonly #secured = deferred<void>();
  readonly #peerAccepted = deferred<void>();
  #phase: Phase = 'tls';
  #peer: PeerIdentity | undefined;
  #peerHasAccepted = false;
  #endReceived = false;
  #failure: RidproxyError | undefined;
  /** Set once this side gives up the channel politely: the socket outlives this stream until the peer closes. */
  #linger: NodeJS.Timeout | undefined;

  constructor(socket: TLSSocket, role: SecureChannelOptions['role']) {
    super({ readableHighWaterMark: HIGH_WATER_MARK, writableHighWaterMark: HIGH_WATER_MARK });
    this.#socket = socket;
    this.#reader = new FrameReader({ data: (payload) => this.#onData(payload), control: (type, payload) => this.#onControl(type, payload) });
    socket.once(role === 'dialer' ? 'secureConnect' : 'secure', () => {
      // A server-side TLSSocket made outside a tls.Server keeps "control" until released, and
      // until then node:tls turns its TLS errors into an internal event instead of 'error': a
      // record failing its AEAD check would look like a plain end. tls.Server releases control at
      // this point of every connection; so do we.
      if (role === 'acceptor') (socket as TLSSocket & { _releaseControl(): boolean })._releaseControl();
      this.#secured.resolve();
    });
    socket.on('data', (chunk: Buffer) => this.#onChunk(chunk));
    socket.on('end', () => this.#onSocketEnd());
    socket.on('error', (err: Error) => this.#onSocketError(err));
    socket.on('close', () => this.#onSocketClose());
  }

  async handshake(options: SecureChannelOptions): Promise<PeerIdentity> {
    await this.#secured.promise;
    this.#phase = 'verdict';
    const peer = this.#authenticate(options.expectedRoutingId);
    if (options.authorize !== undefined) {
      let allowed: boolean;
      try {
        allowed = await options.authorize({ publicKey: Buffer.from(peer.publicKey), routingId: peer.routingId });
      } catch (err) {
        this.#refuse(FrameType.Unauthorized, peer, new RidproxyError('ERR_UNAUTHORIZED', `refused peer ${peer.routingId}: authorize threw: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      }
      this.#throwIfFailed();
      if (allowed !== true) this.#refuse(FrameType.Unauthorized, peer, new RidproxyError('ERR_UNAUTHORIZED', `refused peer ${peer.routingId}: authorize returned false`));
    }
    this.#sendFrame(FrameType.Accept);
    await this.#peerAccepted.promise;
    this.#throwIfFailed();
    this.#phase = 'open';
    return peer;
  }

  /** Ends a handshake that failed or was given up (timeout, abort), unless it is already closing politely. */
  abandon(err: RidproxyError): void {
    this.#failure ??= err;
    this.#secured.reject(err);
    this.#peerAccepted.reject(err);
    this.destroy();
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  #authenticate(expected: RoutingId | undefined): PeerIdentity {
    if (this.#socket.alpnProtocol !== ALPN) {
      throw new ProtocolError('ERR_UNSUPPORTED_VERSION', `secure channel: the peer does not speak ${ALPN} (it negotiated ${JSON.stringify(this.#socket.alpnProtocol)})`);
    }
    const certificate = this.#socket.getPeerX509Certificate();
    const found = certificate === undefined ? { problem: 'it presented no certificate' } : certificateKey(certificate);
    if ('problem' in found) throw new AuthenticationError(`secure channel: cannot authenticate the peer: ${found.problem}`);
    const peer = { publicKey: found.key, routingId: RoutingId.fromPublicKey(found.key) };
    this.#peer = peer;
    if (expected !== undefined && !expected.isNull() && !expected.equals(peer.routingId)) {
      this.#refuse(
        FrameType.Unauthenticated,
        peer,
        new AuthenticationError(`dialed routing id ${expected}, but the peer's key hashes to routing id ${peer.routingId}: it is not the server that was dialed`),
        `it dialed routing id ${expected}, and this side is routing id ${peer.routingId}`,
      );
    }
    return peer;
  }

  /** Tells the peer why, closes politely so it can read that, and throws `error` on this side. */
  #refuse(type: FrameType.Unauthorized | FrameType.Unauthenticated, peer: PeerIdentity, error: RidproxyError, reason = `routing id ${peer.routingId} is not authorized`): never {
    if (this.#failure === undefined) {
      this.#sendFrame(type, Buffer.from(reason, 'latin1'));
      this.#closePolitely(error);
    }
    throw this.#failure ?? error;
  }

  #closePolitely(error: RidproxyError): void {
    this.#failure ??= error;
    this.#secured.reject(this.#failure);
    this.#peerAccepted.reject(this.#failure);
    this.#linger = setTimeout(() => this.#socket.destroy(), LINGER_MS);
    this.#socket.end();
    // Read and drop whatever else comes, so the peer's close is seen and no unread data turns
    // this side's close into a reset that could destroy the refusal before the peer reads it.
    this.#socket.resume();
    this.destroy();
  }

  #sendFrame(type: FrameType, payload: Buffer = EMPTY): boolean {
    // One write per frame: corked, node:tls hands header and payload to OpenSSL as one record
    // instead of a 4-byte record followed by the payload.
    this.#socket.cork();
    this.#socket.write(frameHeader(type, payload.length));
    const ok = payload.length === 0 || this.#socket.write(payload);
    this.#socket.uncork();
    return ok;
  }

  #sendData(chunk: Buffer): boolean {
    let ok = true;
    for (let offset = 0; offset < chunk.length; offset += MAX_PAYLOAD) ok = this.#sendFrame(FrameType.Data, chunk.subarray(offset, offset + MAX_PAYLOAD));
    return ok;
  }

  #whenWritable(ok: boolean, callback: (error?: Error | null) => void): void {
    if (ok) callback();
    else this.#socket.once('drain', () => callback());
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#whenWritable(this.#sendData(chunk), callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.#socket.cork();
    let ok = true;
    for (const { chunk } of chunks) ok = this.#sendData(chunk);
    this.#socket.uncork();
    this.#whenWritable(ok, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#sendFrame(FrameType.End);
    this.#socket.end(() => callback());
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#linger === undefined) this.#socket.destroy();
    callback(error);
  }

  #peerName(): string {
    return this.#peer === undefined ? 'the peer' : `peer ${this.#peer.routingId}`;
  }

  /** Before the channel is open nobody listens for 'error': the handshake's promise reports it. */
  #fail(err: RidproxyError): void {
    if (this.#failure !== undefined || this.#linger !== undefined) return;
    this.#failure = err;
    this.#secured.reject(err);
    this.#peerAccepted.reject(err);
    if (this.#phase === 'open') this.destroy(err);
    else this.destroy();
  }

  #onChunk(chunk: Buffer): void {
    if (this.#linger !== undefined || this.#failure !== undefined) return;
    try {
      this.#reader.push(chunk);
    } catch (err) {
      this.#fail(err as RidproxyError);
    }
  }

  #onData(payload: Buffer): void {
    if (!this.#peerHasAccepted) throw new ProtocolError('ERR_PROTOCOL', `secure channel: ${this.#peerName()} sent data before accepting the channel`);
    if (this.#endReceived) throw new ProtocolError('ERR_PROTOCOL', `secure channel: ${this.#peerName()} sent data after ending its stream`);
    if (payload.length > 0 && !this.push(payload)) this.#socket.pause();
  }

  #onControl(type: FrameType, payload: Buffer): void {
    if (this.#endReceived) throw new ProtocolError('ERR_PROTOCOL', `secure channel: ${this.#peerName()} sent a ${FrameType[type]} frame after ending its stream`);
    const beforeVerdict = !this.#peerHasAccepted;
    switch (type) {
      case FrameType.Accept:
        if (!beforeVerdict || payload.length > 0) break;
        this.#peerHasAccepted = true;
        this.#peerAccepted.resolve();
        return;
      case FrameType.Unauthorized:
        if (!beforeVerdict) break;
        this.#closePolitely(new RidproxyError('ERR_UNAUTHORIZED', `${this.#peerName()} refused this connection: ${printable(payload)}`));
        return;
      case FrameType.Unauthenticated:
        if (!beforeVerdict) break;
        this.#closePolitely(new AuthenticationError(`${this.#peerName()} refused this connection: ${printable(payload)}`));
        return;
      case FrameType.End:
        if (beforeVerdict || payload.length > 0) break;
        this.#endReceived = true;
        this.push(null);
        return;
      default:
        break;
    }
    throw new ProtocolError('ERR_PROTOCOL', `secure channel: unexpected ${FrameType[type]} frame of ${payload.length} bytes from ${this.#peerName()}`);
  }

  /**
   * node:tls gives 'end' both for the peer's close_notify and for a bare FIN, which the relay can
   * forge; only the End frame, which it cannot, makes an end clean.
   */
  #onSocketEnd(): void {
    if (this.#endReceived) return;
    this.#fail(
      this.#phase === 'open'
        ? new RidproxyError('ERR_CONNECTION_LOST', `secure channel: the stream from ${this.#peerName()} was cut off without its end-of-stream marker (the peer failed, or the relay or network dropped the connection)`)
        : new RidproxyError('ERR_CONNECTION_LOST', `secure channel: ${this.#peerName()} closed the connection during the handshake`),
    );
  }

  #onSocketError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const tlsFailure = code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_');
    // A client's handshake is over for node:tls before the server has checked the client's
    // certificate, so TLS errors are handshake failures until the verdicts are exchanged.
    if (this.#phase !== 'open') {
      this.#fail(
        tlsFailure
          ? new AuthenticationError(`secure channel: the TLS handshake failed: ${err.message}`)
          : new RidproxyError('ERR_CONNECTION_LOST', `secure channel: the transport failed during the handshake: ${err.message}`, { cause: err }),
      );
    } else if (tlsFailure) {
      // After the handshake every TLS error means a record failed its AEAD check here, or the
      // peer reports (by alert) that one from this side did: bytes were altered in transit.
      const reason = (err as Error & { reason?: string }).reason ?? err.message;
      const what = code.includes('_ALERT_') ? `${this.#peerName()} reports that data from this side` : `data from ${this.#peerName()}`;
      this.#fail(new RidproxyError('ERR_INTEGRITY', `secure channel: ${what} failed authentication (${reason}): it was altered in transit, and the channel is closed`, { cause: err }));
    } else {
      this.#fail(new RidproxyError('ERR_CONNECTION_LOST', `secure channel to ${this.#peerName()}: the transport failed: ${err.message}`, { cause: err }));
    }
  }

  #onSocketClose(): void {
    if (this.#linger !== undefined) {
      clearTimeout(this.#linger);
      return;
    }
    if (this.#phase !== 'open') {
      this.#fail(new RidproxyError('ERR_CONNECTION_LOST', `secure channel: the transport closed during the handshake with ${this.#peerName()}`));
    } else if (!this.#endReceived) {
      this.#onSocketEnd();
    } else if (!this.writableEnded) {
      this.#fail(new RidproxyError('ERR_CONNECTION_LOST', `secure channel: the connection to ${this.#peerName()} closed before this side ended its stream`));
    }
  }
}
