import { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect, TLSSocket, type SecureContext } from 'node:tls';
import {
  AbortError,
  AuthenticationError,
  IntegrityError,
  InvalidArgumentError,
  ProtocolError,
  Reason,
  RidproxyError,
  TimeoutError,
  UnauthorizedError,
  VcClosedError,
} from '../errors.js';
import { Identity } from '../id/identity.js';
import { RoutingId } from '../id/routing-id.js';
import { certificateKey, secureContextFor } from './certificate.js';
import { MAX_DATA_PLAINTEXT, MAX_HANDSHAKE_SEGMENT, SegmentReader, SegmentType, TAG_SIZE, segmentHeader, totalLength } from './framing.js';
import { EXPORTER_LABEL, EXPORTER_LENGTH, RecordOpener, RecordSealer, aeadForSuite, directionSecrets } from './records.js';

/** Names this protocol inside the TLS handshake, so a peer speaking anything else fails there. */
const ALPN = 'ridproxy-e2e/2';
const DEFAULT_TIMEOUT_MS = 30_000;
/** How long a side that refused (or was refused) waits for the peer to read that and close. */
const LINGER_MS = 2_000;
const READ_HIGH_WATER_MARK = 64 * 1024;
/**
 * What the multiplexer may hand this stream before a write returns false: a full record's worth
 * of frames (four of 64 KiB), so that they are sealed as one record and the cost of a Cipheriv is
 * spread over 256 KiB, not 64 (see #accept).
 */
const WRITE_HIGH_WATER_MARK = MAX_DATA_PLAINTEXT + 1024;
/**
 * Sealed bytes a receiver holds while its own handshake is still finishing: the peer's verdict,
 * which may overtake the last handshake bytes on their way through node:tls.
 */
const MAX_EARLY_SEALED = 4 * 1024;
/** Handshake bytes a side drops once its handshake is over (TLS session tickets, which are not used). */
const MAX_LATE_HANDSHAKE = 64 * 1024;

export interface PeerIdentity {
  /** The peer's raw 32-byte Ed25519 public key. */
  publicKey: Buffer;
  routingId: RoutingId;
}

export interface SecureChannelOptions {
  identity: Identity;
  role: 'dialer' | 'acceptor';
  /**
   * The routing ID the peer must prove; the handshake fails (ERR_AUTHENTICATION, and the peer is
   * told why) unless its key hashes to it. For a dialer, the routing ID it dialed; for an
   * acceptor, the source the VC claimed. Omitted or RoutingId.NULL means whoever answers, as the
   * null RID does in an endpoint.
   */
  expectedRoutingId?: RoutingId;
  /** Optional check on the authenticated peer; return false (or throw) to refuse it. */
  authorize?: (peer: PeerIdentity) => boolean | Promise<boolean>;
  signal?: AbortSignal;
  /** Limit on the whole handshake, authorize included, in ms. Default 30 s. */
  timeout?: number;
}

export interface SecureChannel {
  /** Carries the application's bytes; errors are RidproxyErrors (IntegrityError when data was altered). */
  stream: Duplex;
  peerPublicKey: Buffer;
  peerRoutingId: RoutingId;
  /**
   * Milliseconds from this side's first handshake flight to the peer's answer that completed its
   * TLS handshake: one round trip of the transport, known before any data flows.
   */
  rtt: number;
}

/**
 * Runs a mutually authenticated TLS 1.3 handshake over `transport` (in ridproxy, a VC's byte
 * stream) and resolves to an encrypted stream once both sides have accepted each other. The
 * stream's bytes travel in records sealed with keys exported from that handshake (framing.ts).
 *
 * Takes ownership of `transport`: it is ended and destroyed with the returned stream, and destroyed
 * (after a short linger, when the peer is being told why) whenever this function rejects. Rejects with AuthenticationError when the peer cannot be authenticated
 * (or is not the expected routing ID), UnauthorizedError when either side's authorize check
 * refuses the other, TimeoutError, AbortError, or VcClosedError (ERR_CONNECTION_LOST) when the
 * transport goes away.
 */
export async function secureChannel(transport: Duplex, options: SecureChannelOptions): Promise<SecureChannel> {
  const { signal } = options ?? {};
  let timeout: number;
  let secureContext: SecureContext;
  try {
    timeout = checkOptions(options);
    if (signal?.aborted) throw aborted(signal);
    if (transport.destroyed) throw new VcClosedError(Reason.ConnectionLost, 'secure channel: the transport is already closed');
    secureContext = secureContextFor(options.identity);
  } catch (err) {
    transport.destroy();
    throw err;
  }
  // A peer's end must not end this side's writing: each direction ends with its own End record.
  transport.allowHalfOpen = true;
  const stream = new SecureStream(transport, options.role, secureContext);

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
    return { stream, peerPublicKey: peer.publicKey, peerRoutingId: peer.routingId, rtt: stream.rtt! };
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
  const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `secure channel: timeout must be a positive number of ms, got ${options.timeout}`);
  }
  return timeout;
}

function ignoreError(): void {}

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
 * The application's side of the channel. During the handshake, TLS runs over a stream of its own
 * whose bytes travel in Handshake segments; once it is done, the verdicts, the data and each
 * direction's end travel in sealed records on the transport itself.
 */
class SecureStream extends Duplex {
  readonly #transport: Duplex;
  readonly #role: SecureChannelOptions['role'];
  /** What TLS reads and writes: Handshake segments' bodies in, this side's handshake bytes out. */
  readonly #handshakeIo: Duplex;
  /** The TLS connection, until the peer's verdict shows it has finished with it. */
  #tls: TLSSocket | undefined;
  readonly #reader: SegmentReader;
  readonly #secured = deferred<void>();
  readonly #peerAccepted = deferred<void>();
  #sealer: RecordSealer | undefined;
  #opener: RecordOpener | undefined;
  /** Sealed segments that arrived before this side's handshake finished. */
  #early: Array<[SegmentType, Buffer, Buffer[]]> = [];
  #earlyBytes = 0;
  #lateHandshakeBytes = 0;
  #phase: Phase = 'tls';
  /** What the handshake settled, kept when it finishes: TLS may be gone before the verdict is made. */
  #negotiated: { alpn: string | false | null; problem: string | undefined } | undefined;
  #peer: PeerIdentity | undefined;
  #peerHasAccepted = false;
  #endReceived = false;
  #failure: RidproxyError | undefined;
  /** Set once this side gives up the channel politely: the transport outlives this stream until the peer closes. */
  #linger: NodeJS.Timeout | undefined;
  #waitingForDrain: Array<(error?: Error | null) => void> = [];
  /** Written Data not sealed yet (#accept), and the check-phase callback that will seal it. */
  #unsealed: Buffer[] = [];
  #unsealedBytes = 0;
  #sealSoon: NodeJS.Immediate | undefined;
  /** The transport's last write reported it full: writes wait for its 'drain'. */
  #transportFull = false;
  #firstFlightAt: number | undefined;
  /** Set when TLS completes: see SecureChannel.rtt. */
  rtt: number | undefined;

  constructor(transport: Duplex, role: SecureChannelOptions['role'], secureContext: SecureContext) {
    super({ readableHighWaterMark: READ_HIGH_WATER_MARK, writableHighWaterMark: WRITE_HIGH_WATER_MARK });
    // The owner can only attach its handler once secureChannel() has resolved, a few ticks after
    // the transport may already have failed; the reason stays in `errored` for it to read.
    this.on('error', ignoreError);
    this.#transport = transport;
    this.#role = role;
    this.#handshakeIo = new Duplex({
      read: () => undefined,
      write: (chunk: Buffer, _encoding, callback) => {
        this.#firstFlightAt ??= performance.now();
        for (let offset = 0; offset < chunk.length; offset += MAX_HANDSHAKE_SEGMENT) {
          const part = chunk.subarray(offset, offset + MAX_HANDSHAKE_SEGMENT);
          this.#writeSegment(segmentHeader(SegmentType.Handshake, part.length), [part]);
        }
        callback();
      },
      // TLS ending or dropping its stream is no business of the transport: this class closes that.
      final: (callback) => callback(),
    });
    const common = { secureContext, ALPNProtocols: [ALPN], rejectUnauthorized: false };
    // rejectUnauthorized is off because there is no CA: a peer is accepted for its key, which
    // #authenticate checks once the handshake has proved the peer holds it.
    const tls =
      role === 'dialer'
        ? tlsConnect({ ...common, socket: this.#handshakeIo })
        : new TLSSocket(this.#handshakeIo, { ...common, isServer: true, requestCert: true });
    this.#tls = tls;
    tls.once(role === 'dialer' ? 'secureConnect' : 'secure', () => this.#onSecure(tls));
    tls.on('error', (err: Error) => this.#onTlsError(err));
    tls.on('close', () => {
      if (this.#tls === tls) this.#fail(new VcClosedError(Reason.ConnectionLost, `secure channel: ${this.#peerName()} closed the connection during the handshake`));
    });
    this.#reader = new SegmentReader({
      handshake: (bytes) => this.#onHandshakeBytes(bytes),
      sealed: (type, header, body) => this.#onSealed(type, header, body),
    });
    transport.on('data', (chunk: Buffer) => this.#onChunk(chunk));
    transport.on('end', () => this.#onTransportEnd());
    transport.on('error', (err: Error) => this.#onTransportError(err));
    transport.on('close', () => this.#onTransportClose());
    transport.on('drain', () => {
      this.#transportFull = false;
      for (const callback of this.#waitingForDrain.splice(0)) callback();
    });
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
        this.#refuse(SegmentType.Unauthorized, peer, new UnauthorizedError(`refused peer ${peer.routingId}: authorize threw: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      }
      this.#throwIfFailed();
      if (allowed !== true) this.#refuse(SegmentType.Unauthorized, peer, new UnauthorizedError(`refused peer ${peer.routingId}: authorize returned false`));
    }
    this.#writeRecord(SegmentType.Accept, []);
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

  /** Keys for both directions, from the handshake this side has just completed. */
  #onSecure(tls: TLSSocket): void {
    // A server-side TLSSocket made outside a tls.Server keeps "control" until released, and until
    // then node:tls turns its TLS errors into an internal event instead of 'error': an alert from
    // the peer would go unseen. tls.Server releases control at this point; so do we.
    if (this.#role === 'acceptor') (tls as TLSSocket & { _releaseControl(): boolean })._releaseControl();
    // The dialer's first flight is its hello, the acceptor's its reply to one: either way what
    // completes the handshake is the peer's answer to it.
    this.rtt = performance.now() - (this.#firstFlightAt ?? performance.now());
    const certificate = tls.getPeerX509Certificate();
    const found = certificate === undefined ? { problem: 'it presented no certificate' } : certificateKey(certificate);
    this.#negotiated = { alpn: tls.alpnProtocol, problem: 'problem' in found ? found.problem : undefined };
    // Known from here on, so the peer's verdict, which may arrive before this side makes its own, can name it.
    if ('key' in found) this.#peer = { publicKey: found.key, routingId: RoutingId.fromPublicKey(found.key) };
    try {
      const aead = aeadForSuite(tls.getCipher().standardName);
      const [dialerSecret, acceptorSecret] = directionSecrets(tls.exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.from(ALPN)));
      this.#sealer = new RecordSealer(aead, this.#role === 'dialer' ? dialerSecret : acceptorSecret);
      this.#opener = new RecordOpener(aead, this.#role === 'dialer' ? acceptorSecret : dialerSecret);
      this.#secured.resolve();
      for (const [type, header, body] of this.#early.splice(0)) this.#onSealed(type, header, body);
    } catch (err) {
      this.#fail(err as RidproxyError);
    }
  }

  #authenticate(expected: RoutingId | undefined): PeerIdentity {
    const { alpn, problem } = this.#negotiated!;
    if (alpn !== ALPN) {
      throw new ProtocolError('ERR_UNSUPPORTED_VERSION', `secure channel: the peer does not speak ${ALPN} (it negotiated ${JSON.stringify(alpn)})`);
    }
    const peer = this.#peer;
    if (peer === undefined) throw new AuthenticationError(`secure channel: cannot authenticate the peer: ${problem}`);
    if (expected !== undefined && !expected.isNull() && !expected.equals(peer.routingId)) {
      if (this.#role === 'dialer') {
        this.#refuse(
          SegmentType.Unauthenticated,
          peer,
          new AuthenticationError(`dialed routing id ${expected}, but the peer's key hashes to routing id ${peer.routingId}: it is not the server that was dialed`),
          `it dialed routing id ${expected}, and this side is routing id ${peer.routingId}`,
        );
      }
      this.#refuse(
        SegmentType.Unauthenticated,
        peer,
        new AuthenticationError(`the VC claimed to come from routing id ${expected}, but the peer's key hashes to routing id ${peer.routingId}`),
        `the VC claimed to come from routing id ${expected}, but this side proved routing id ${peer.routingId}`,
      );
    }
    return peer;
  }

  /** Tells the peer why, closes politely so it can read that, and throws `error` on this side. */
  #refuse(type: SegmentType.Unauthorized | SegmentType.Unauthenticated, peer: PeerIdentity, error: RidproxyError, reason = `routing id ${peer.routingId} is not authorized`): never {
    if (this.#failure === undefined) {
      this.#writeRecord(type, [Buffer.from(reason, 'latin1')]);
      this.#closePolitely(error);
    }
    throw this.#failure ?? error;
  }

  #closePolitely(error: RidproxyError): void {
    this.#failure ??= error;
    this.#secured.reject(this.#failure);
    this.#peerAccepted.reject(this.#failure);
    this.#dropTls();
    this.#linger = setTimeout(() => this.#transport.destroy(), LINGER_MS);
    this.#transport.end();
    // Read and drop whatever else comes, so the peer's close is seen and no unread data turns
    // this side's close into a reset that could destroy the refusal before the peer reads it.
    this.#transport.resume();
    this.destroy();
  }

  /** Header and body leave as one write of several parts: one writev on a socket, one Data frame on a VC. */
  #writeSegment(header: Buffer, body: readonly Buffer[]): boolean {
    const transport = this.#transport;
    if (transport.destroyed || transport.writableEnded) return true;
    transport.cork();
    let ok = transport.write(header);
    for (const part of body) ok = transport.write(part);
    transport.uncork();
    return ok;
  }

  #writeRecord(type: SegmentType, plaintext: readonly Buffer[]): boolean {
    const header = segmentHeader(type, totalLength(plaintext) + TAG_SIZE);
    return this.#writeSegment(header, this.#sealer!.seal(header, plaintext));
  }

  /**
   * Seals `chunks` as Data records of at most MAX_DATA_PLAINTEXT bytes each, split evenly: four
   * multiplexer frames with their headers are a little more than one record, and would otherwise
   * leave a record of 48 bytes after each full one.
   */
  #sendData(chunks: readonly Buffer[]): boolean {
    let remaining = totalLength(chunks);
    let recordsLeft = Math.ceil(remaining / MAX_DATA_PLAINTEXT);
    // Never above MAX_DATA_PLAINTEXT: what remains is at most recordsLeft full records.
    let target = Math.ceil(remaining / recordsLeft);
    let ok = true;
    let record: Buffer[] = [];
    let size = 0;
    for (let chunk of chunks) {
      while (chunk.length > 0) {
        const take = Math.min(chunk.length, target - size);
        record.push(take === chunk.length ? chunk : chunk.subarray(0, take));
        size += take;
        chunk = chunk.subarray(take);
        if (size === target) {
          ok = this.#writeRecord(SegmentType.Data, record);
          remaining -= size;
          recordsLeft--;
          record = [];
          size = 0;
          if (recordsLeft > 0) target = Math.ceil(remaining / recordsLeft);
        }
      }
    }
    return ok;
  }

  /**
   * Takes the multiplexer's writes and seals them a little later: once a record's worth has
   * gathered, or in the event loop's check phase (setImmediate), after the reads of this turn of
   * the loop have all been handled. A bulk flow's frames come one per socket read, each in a
   * write of its own; sealed at once, every 64 KiB frame was a record, with a Cipheriv, a
   * Decipheriv and a trip through the VC of its own. What waits here is at most one record: a
   * write that would pass it seals at once.
   */
  #accept(chunks: readonly Buffer[], callback: (error?: Error | null) => void): void {
    for (const chunk of chunks) {
      if (chunk.length === 0) continue;
      this.#unsealed.push(chunk);
      this.#unsealedBytes += chunk.length;
    }
    if (this.#unsealedBytes >= MAX_DATA_PLAINTEXT) this.#sealUnsealed();
    else if (this.#unsealedBytes > 0) this.#sealSoon ??= setImmediate(() => this.#sealUnsealed());
    if (this.#transportFull) this.#waitingForDrain.push(callback);
    else callback();
  }

  #sealUnsealed(): void {
    if (this.#sealSoon !== undefined) {
      clearImmediate(this.#sealSoon);
      this.#sealSoon = undefined;
    }
    if (this.#unsealedBytes === 0) return;
    const chunks = this.#unsealed;
    this.#unsealed = [];
    this.#unsealedBytes = 0;
    // Full: the next write waits for the transport's 'drain' (what is sealed is already with it).
    if (!this.#sendData(chunks)) this.#transportFull = true;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#accept([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.#accept(
      chunks.map(({ chunk }) => chunk),
      callback,
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#sealUnsealed();
    this.#writeRecord(SegmentType.End, []);
    this.#transport.end(() => callback());
  }

  override _read(): void {
    this.#transport.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#sealSoon !== undefined) clearImmediate(this.#sealSoon);
    this.#sealSoon = undefined;
    this.#unsealed = [];
    this.#unsealedBytes = 0;
    this.#dropTls();
    if (this.#linger === undefined) this.#transport.destroy();
    for (const waiting of this.#waitingForDrain.splice(0)) waiting(error ?? new VcClosedError(Reason.ConnectionLost, `secure channel to ${this.#peerName()} was closed`));
    callback(error);
  }

  /** TLS is done with once the peer's verdict shows it finished its handshake too. */
  #dropTls(): void {
    const tls = this.#tls;
    this.#tls = undefined;
    tls?.destroy();
    this.#handshakeIo.destroy();
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

  #onHandshakeBytes(bytes: Buffer): void {
    if (this.#tls !== undefined) {
      this.#handshakeIo.push(bytes);
      return;
    }
    this.#lateHandshakeBytes += bytes.length;
    if (this.#lateHandshakeBytes > MAX_LATE_HANDSHAKE) {
      throw new ProtocolError('ERR_PROTOCOL', `secure channel: ${this.#peerName()} sent more than ${MAX_LATE_HANDSHAKE} bytes of handshake after the handshake`);
    }
  }

  #onSealed(type: SegmentType, header: Buffer, body: Buffer[]): void {
    const opener = this.#opener;
    if (opener === undefined) {
      this.#earlyBytes += totalLength(body);
      if (this.#earlyBytes > MAX_EARLY_SEALED) throw new ProtocolError('ERR_PROTOCOL', `secure channel: ${this.#peerName()} sent more than ${MAX_EARLY_SEALED} bytes of records before the handshake finished`);
      this.#early.push([type, header, body]);
      return;
    }
    let plaintext: Buffer[];
    try {
      plaintext = opener.open(header, body);
    } catch (err) {
      throw new IntegrityError(`secure channel: data from ${this.#peerName()} failed authentication: it was altered in transit, and the channel is closed`, { cause: err });
    }
    if (this.#endReceived) throw new ProtocolError('ERR_PROTOCOL', `secure channel: ${this.#peerName()} sent a ${SegmentType[type]} record after ending its stream`);
    if (type === SegmentType.Data) this.#onData(plaintext);
    else this.#onControl(type, plaintext.length === 1 ? plaintext[0] : Buffer.concat(plaintext));
  }

  #onData(plaintext: Buffer[]): void {
    if (!this.#peerHasAccepted) throw new ProtocolError('ERR_PROTOCOL', `secure channel: ${this.#peerName()} sent data before accepting the channel`);
    let more = true;
    for (const part of plaintext) if (part.length > 0) more = this.push(part);
    if (!more) this.#transport.pause();
  }

  #onControl(type: SegmentType, payload: Buffer): void {
    const beforeVerdict = !this.#peerHasAccepted;
    switch (type) {
      case SegmentType.Accept:
        if (!beforeVerdict) break;
        this.#peerHasAccepted = true;
        this.#dropTls();
        this.#peerAccepted.resolve();
        return;
      case SegmentType.Unauthorized:
        if (!beforeVerdict) break;
        this.#closePolitely(new UnauthorizedError(`${this.#peerName()} refused this connection: ${printable(payload)}`));
        return;
      case SegmentType.Unauthenticated:
        if (!beforeVerdict) break;
        this.#closePolitely(new AuthenticationError(`${this.#peerName()} refused this connection: ${printable(payload)}`));
        return;
      case SegmentType.End:
        if (beforeVerdict) break;
        this.#endReceived = true;
        this.push(null);
        return;
      default:
        break;
    }
    throw new ProtocolError('ERR_PROTOCOL', `secure channel: unexpected ${SegmentType[type]} record of ${payload.length} bytes from ${this.#peerName()}`);
  }

  /** A bare end of the transport, which the relay can forge: only the End record, which it cannot, makes an end clean. */
  #onTransportEnd(): void {
    if (this.#endReceived) return;
    this.#fail(
      this.#phase === 'open'
        ? new VcClosedError(Reason.ConnectionLost, `secure channel: the stream from ${this.#peerName()} was cut off without its end-of-stream marker (the peer failed, or the relay or network dropped the connection)`)
        : new VcClosedError(Reason.ConnectionLost, `secure channel: ${this.#peerName()} closed the connection during the handshake`),
    );
  }

  /** Until the verdicts are exchanged, any TLS error is a handshake failure: the peer's alert, or this side's check of the peer. */
  #onTlsError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const tlsFailure = code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_');
    this.#fail(
      tlsFailure
        ? new AuthenticationError(`secure channel: the TLS handshake failed: ${err.message}`)
        : new VcClosedError(Reason.ConnectionLost, `secure channel: the handshake with ${this.#peerName()} failed: ${err.message}`, { cause: err }),
    );
  }

  #onTransportError(err: Error): void {
    const during = this.#phase === 'open' ? `secure channel to ${this.#peerName()}: the transport failed` : 'secure channel: the transport failed during the handshake';
    this.#fail(new VcClosedError(Reason.ConnectionLost, `${during}: ${err.message}`, { cause: err }));
  }

  #onTransportClose(): void {
    if (this.#linger !== undefined) {
      clearTimeout(this.#linger);
      return;
    }
    if (this.#phase !== 'open') {
      this.#fail(new VcClosedError(Reason.ConnectionLost, `secure channel: the transport closed during the handshake with ${this.#peerName()}`));
    } else if (!this.#endReceived) {
      this.#onTransportEnd();
    } else if (!this.writableEnded) {
      this.#fail(new VcClosedError(Reason.ConnectionLost, `secure channel: the connection to ${this.#peerName()} closed before this side ended its stream`));
    }
  }
}

