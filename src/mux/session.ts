import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { InvalidArgumentError, MuxError } from '../errors.js';
import { Flag, FrameType, GoAwayCode, INITIAL_STREAM_WINDOW, MAX_U32, encodeHeader, type FrameHeader } from './frame.js';
import { kAbort, kData, kDataStart, kFlags, kSessionHandle, kOpen, kSendSome, kWindowUpdate, type SessionHandle } from './internal.js';
import { PeerStreamIds } from './ids.js';
import { FrameParser } from './parser.js';
import { YamuxStream, sessionOf, type YamuxStreamInit } from './stream.js';

export interface YamuxSessionOptions {
  /** True on the side that opened the underlying transport: its streams get odd ids. */
  client: boolean;
  /** Receive window per stream at first, at least (and by default) the spec's 256 KiB; more is announced on SYN/ACK. */
  streamWindow?: number;
  /**
   * Largest receive window a stream grows to while its reader keeps up with a long path; default
   * 16 MiB, at least streamWindow (equal to it: fixed windows). Round trips come from pings.
   */
  maxStreamWindow?: number;
  /** Open streams allowed at once, both directions together; default 4096. */
  maxStreams?: number;
  /** Milliseconds between keepalive pings; default 30 000, 0 disables them. */
  keepAliveInterval?: number;
  /** Milliseconds a keepalive ping may go unanswered before the session fails; default twice the interval. */
  keepAliveTimeout?: number;
  /** Largest Data body sent in one frame (bigger writes are split); default 64 KiB. */
  maxFrameSize?: number;
  /** Builds the stream object for both opened and accepted streams, e.g. a subclass. */
  createStream?: (init: YamuxStreamInit) => YamuxStream;
  /**
   * Streams the peer opens stay pending until `stream.markAccepted()`, for a caller that queues
   * them before its application takes them (the manager's accept queue). A pending stream is held
   * to the spec's initial window, what it buffers counts against `pendingAcceptBudget`, and it
   * counts against `maxPendingAccept`. Default false: the 'stream' event is the hand-off, and the
   * listener owns the stream from then on.
   */
  deferAccept?: boolean;
  /**
   * Bytes that all pending streams together may buffer, default 4 MiB; each Data frame is also
   * charged a fixed 256 bytes for its bookkeeping. A Data frame that would pass the budget resets
   * its stream (RST) instead of being buffered.
   */
  pendingAcceptBudget?: number;
  /** Streams pending at once, default 1024; a SYN beyond it is answered with RST. */
  maxPendingAccept?: number;
  /**
   * SYNs this side may have sent that still await their ACK, default 256 (hashicorp/yamux's
   * accept backlog, beyond which it resets new streams). A stream opened beyond it waits here:
   * `openStream()` returns it at once, but its SYN, writes and FIN go out only when an earlier
   * SYN is acknowledged or its stream closes.
   */
  openBacklog?: number;
}

const DEFAULT_MAX_STREAMS = 4096;
export const DEFAULT_MAX_STREAM_WINDOW = 16 << 20;
const DEFAULT_KEEPALIVE_INTERVAL = 30_000;
const DEFAULT_MAX_FRAME_SIZE = 64 * 1024;
/**
 * The protocol lets a peer send 256 KiB on every stream it opens before anyone reads it, so
 * without a budget 400 unaccepted streams would hold 100 MiB. 4 MiB is what sixteen full initial
 * windows take, far more than a well-behaved peer has in flight before an accept loop takes its
 * streams (that loop runs between two reads of the transport), and small enough that a VC's
 * unaccepted streams cost no more than a few of its accepted ones.
 */
const DEFAULT_PENDING_ACCEPT_BUDGET = 4 << 20;
/**
 * As large as the manager's default accept backlog, so that a burst of SYNs that arrives in one
 * read (1,000 flows dialled at once) is not cut short per VC. A pending stream with no data costs
 * its object, a few KiB; the bytes are bounded by the budget.
 */
const DEFAULT_MAX_PENDING_ACCEPT = 1024;
/**
 * hashicorp/yamux's default AcceptBacklog: it queues at most that many streams that its
 * application has not accepted (it sends the ACK at accept) and resets any SYN beyond. With no
 * more than this many SYNs unacknowledged, we can never overflow it.
 */
const DEFAULT_OPEN_BACKLOG = 256;
/**
 * How many of the peer's ids below its highest one, still without their SYN, are remembered
 * (see PeerStreamIds). A hashicorp peer has at most its accept backlog (256 by default) of them;
 * four times that leaves room for a larger backlog and costs at most a few tens of KiB.
 */
const MAX_PEER_ID_GAPS = 1024;
/**
 * What a Data frame on a pending stream is charged besides its bytes: each piece of it is a Buffer
 * of its own in the stream's read queue, about 120 bytes of objects, and a frame that straddles two
 * reads of the transport is two pieces. Without it a peer sending one-byte frames would hold over
 * a hundred bytes per byte of budget.
 */
const PENDING_FRAME_COST = 256;

/**
 * open: streams flow both ways. closing: close() sent GoAway; existing streams may finish, no new
 * ones. ending: nothing left, the transport was ended and its 'close' will settle the session.
 * closed: settled.
 */
type State = 'open' | 'closing' | 'ending' | 'closed';

type PingDone = (err: Error | undefined, rtt?: number) => void;

/** Bytes queued on the transport beyond which the peer is taken to have stopped reading. */
const MAX_UNREAD_BACKLOG = 4 << 20;

function connectionClosed(): MuxError {
  return new MuxError('ERR_SESSION_CLOSED', 'the connection carrying this stream closed');
}

function checkInteger(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `yamux option ${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}

/**
 * A yamux session over an ordered, reliable byte stream (hashicorp yamux spec). Emits 'stream'
 * synchronously for each stream the peer opens (with no 'stream' listener the stream is refused
 * with RST), and 'close' once with the error that ended the session, or none for a clean close.
 *
 * Writes from all streams are sent round-robin, one frame per turn, and only while the transport
 * accepts more (its write() returned true); after a false the session waits for 'drain'. A
 * stream's write callback runs once its last byte was handed to the transport, so no layer here
 * buffers without bound.
 */
export class YamuxSession extends EventEmitter {
  /** Settles when the session ends: undefined for a clean close, the error otherwise. Never rejects. */
  readonly closed: Promise<Error | undefined>;
  readonly [kSessionHandle]: SessionHandle;

  readonly #transport: Duplex;
  readonly #parser: FrameParser;
  readonly #createStream: (init: YamuxStreamInit) => YamuxStream;
  readonly #streamWindow: number;
  readonly #maxStreams: number;
  readonly #maxFrameSize: number;
  readonly #client: boolean;
  readonly #streams = new Map<number, YamuxStream>();
  /** Streams with data and window, in the order they get their next turn. */
  readonly #ready = new Set<YamuxStream>();
  readonly #pings = new Map<number, { start: number; done: PingDone }>();
  #resolveClosed!: (err: Error | undefined) => void;
  #state: State = 'open';
  #nextStreamId: number;
  /** Which of the peer's ids its SYNs have used, in whatever order they came. */
  readonly #peerIds: PeerStreamIds;
  readonly #openBacklog: number;
  /** Our streams whose SYN is sent and not yet acknowledged (by ACK, or by the stream closing). */
  readonly #awaitingAck = new Set<number>();
  /** Our streams opened beyond the backlog, oldest first: their SYN is not sent yet. */
  readonly #awaitingSyn = new Set<YamuxStream>();
  #remoteGoAway = false;
  #blocked = false;
  #flushing = false;
  /** The stream receiving the current Data frame's body; undefined when it is being skipped. */
  #dataTarget: YamuxStream | undefined;
  #nextPingId = 1;
  #rtt: number | undefined;
  /** The least round trip any ping took: what stream windows are timed by (see HopConnection.baseRtt). */
  #baseRtt: number | undefined;
  #keepAliveTimer: NodeJS.Timeout | undefined;
  #keepAliveDeadline: NodeJS.Timeout | undefined;
  readonly #keepAliveTimeout: number;
  readonly #deferAccept: boolean;
  readonly #pendingAcceptBudget: number;
  readonly #maxPendingAccept: number;
  /** Streams the peer opened that the application has not taken yet, with what each is charged. */
  readonly #pendingAccept = new Map<YamuxStream, number>();
  #pendingAcceptBytes = 0;

  constructor(transport: Duplex, options: YamuxSessionOptions) {
    super();
    this.#transport = transport;
    this.#client = options.client;
    this.#nextStreamId = options.client ? 1 : 2;
    this.#peerIds = new PeerStreamIds(options.client ? 2 : 1, MAX_PEER_ID_GAPS);
    this.#streamWindow = checkInteger('streamWindow', options.streamWindow ?? INITIAL_STREAM_WINDOW, INITIAL_STREAM_WINDOW, MAX_U32);
    const maxStreamWindow = checkInteger('maxStreamWindow', options.maxStreamWindow ?? Math.max(DEFAULT_MAX_STREAM_WINDOW, this.#streamWindow), this.#streamWindow, MAX_U32);
    this.#maxStreams = checkInteger('maxStreams', options.maxStreams ?? DEFAULT_MAX_STREAMS, 1, MAX_U32);
    this.#maxFrameSize = checkInteger('maxFrameSize', options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE, 1, MAX_U32);
    const keepAliveInterval = checkInteger('keepAliveInterval', options.keepAliveInterval ?? DEFAULT_KEEPALIVE_INTERVAL, 0, 2 ** 31 - 1);
    this.#keepAliveTimeout = checkInteger('keepAliveTimeout', options.keepAliveTimeout ?? 2 * keepAliveInterval, 0, 2 ** 31 - 1);
    this.#createStream = options.createStream ?? ((init) => new YamuxStream(init));
    this.#deferAccept = options.deferAccept ?? false;
    this.#pendingAcceptBudget = checkInteger('pendingAcceptBudget', options.pendingAcceptBudget ?? DEFAULT_PENDING_ACCEPT_BUDGET, 0, Number.MAX_SAFE_INTEGER);
    this.#maxPendingAccept = checkInteger('maxPendingAccept', options.maxPendingAccept ?? DEFAULT_MAX_PENDING_ACCEPT, 0, Number.MAX_SAFE_INTEGER);
    this.#openBacklog = checkInteger('openBacklog', options.openBacklog ?? DEFAULT_OPEN_BACKLOG, 1, Number.MAX_SAFE_INTEGER);
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });

    this[kSessionHandle] = {
      streamWindow: this.#streamWindow,
      maxStreamWindow,
      baseRtt: () => this.#baseRtt,
      maxFrameSize: this.#maxFrameSize,
      canSend: () => this.#canSend(),
      sendControl: (type, flags, streamId, length) => this.#sendControl(type, flags, streamId, length),
      sendData: (streamId, length, pieces) => this.#sendData(streamId, length, pieces),
      schedule: (stream) => this.#schedule(stream),
      release: (stream) => this.#release(stream),
      accepted: (stream) => this.#forgetPending(stream),
    };

    this.#parser = new FrameParser({
      frame: (header) => this.#onFrame(header),
      data: (piece) => this.#dataTarget?.[kData](piece),
      dataEnd: (header) => this.#onDataEnd(header),
      error: (err) => this.#fail(err, err, GoAwayCode.ProtocolError),
    });

    transport.on('data', (chunk: Buffer) => {
      if (this.#state === 'open' || this.#state === 'closing') this.#parser.push(chunk);
    });
    transport.on('drain', () => {
      this.#blocked = false;
      this.#flush();
    });
    transport.on('end', () => this.#onTransportEnd());
    transport.on('error', (err: Error) => this.#onTransportError(err));
    transport.on('close', () => this.#onTransportClose());

    if (keepAliveInterval > 0) {
      this.#keepAliveTimer = setInterval(() => this.#keepAlive(), keepAliveInterval);
      this.#keepAliveTimer.unref();
    }
  }

  /** Round-trip time in milliseconds of the last answered ping (keepalive or ping()). */
  get rtt(): number | undefined {
    return this.#rtt;
  }

  /** Streams holding a slot: not yet closed by both sides, nor reset. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** What streams waiting for markAccepted() are charged against pendingAcceptBudget: their bytes plus 256 per Data frame. */
  get pendingAcceptBytes(): number {
    return this.#pendingAcceptBytes;
  }

  /** Streams the peer opened that wait for markAccepted() (only with deferAccept). */
  get pendingAcceptStreams(): number {
    return this.#pendingAccept.size;
  }

  /** Our streams whose SYN is out and whose ACK has not come (at most `openBacklog`). */
  get streamsAwaitingAck(): number {
    return this.#awaitingAck.size;
  }

  /** Our streams opened beyond `openBacklog`, waiting here to send their SYN. */
  get streamsAwaitingSyn(): number {
    return this.#awaitingSyn.size;
  }

  /** True once close() or destroy() was called or the session failed: no new streams either way. */
  get isClosed(): boolean {
    return this.#state !== 'open';
  }

  /**
   * Opens a stream. Its SYN is sent at once, unless `openBacklog` SYNs already await their ACK:
   * then it waits here, in order, and what is written to it is held until its SYN has gone out.
   * Throws ERR_SESSION_CLOSED or ERR_STREAM_LIMIT.
   */
  openStream(): YamuxStream {
    if (this.#state !== 'open') throw new MuxError('ERR_SESSION_CLOSED', 'cannot open a stream: the session is closed');
    if (this.#remoteGoAway) throw new MuxError('ERR_SESSION_CLOSED', 'cannot open a stream: the peer is closing the session (GoAway received)');
    if (this.#streams.size >= this.#maxStreams) {
      throw new MuxError('ERR_STREAM_LIMIT', `cannot open a stream: ${this.#streams.size} streams are open, the limit is ${this.#maxStreams}`);
    }
    if (this.#nextStreamId > MAX_U32) throw new MuxError('ERR_STREAM_LIMIT', 'cannot open a stream: this session has used up its stream ids');
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    const stream = this.#newStream(id);
    if (this.#awaitingSyn.size === 0 && this.#awaitingAck.size < this.#openBacklog) {
      this.#announce(stream);
    } else {
      this.#awaitingSyn.add(stream);
    }
    return stream;
  }

  #announce(stream: YamuxStream): void {
    this.#awaitingAck.add(stream.id);
    stream[kOpen](Flag.SYN);
  }

  /** Sends the SYNs of waiting streams while the backlog has room. */
  #announceWaiting(): void {
    while (this.#awaitingSyn.size > 0 && this.#awaitingAck.size < this.#openBacklog && this.#canSend()) {
      const [stream] = this.#awaitingSyn;
      this.#awaitingSyn.delete(stream);
      this.#announce(stream);
    }
  }

  /** The peer acknowledged one of our SYNs, or its stream closed: a backlog slot is free. */
  #acknowledged(id: number): void {
    if (this.#awaitingAck.delete(id)) this.#announceWaiting();
  }

  /** Sends a ping and resolves to the round-trip time in milliseconds; rejects if the session ends first. */
  ping(): Promise<number> {
    return new Promise((resolve, reject) => {
      if (!this.#canSend()) {
        reject(new MuxError('ERR_SESSION_CLOSED', 'cannot ping: the session is closed'));
        return;
      }
      this.#sendPing((err, rtt) => (err ? reject(err) : resolve(rtt as number)));
    });
  }

  /**
   * Graceful close: sends GoAway, refuses new streams from either side, lets the open streams run
   * to their end (FIN both ways, or RST), then ends the transport. There is no grace timer: a
   * caller that wants a deadline calls destroy() when it expires. `closed` settles when the
   * transport has closed.
   */
  close(): void {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    this.#sendControl(FrameType.GoAway, 0, 0, GoAwayCode.Normal);
    this.#endIfIdle();
  }

  /**
   * Tears the session down now and destroys the transport. Open streams are destroyed with `err`;
   * without one (a local, deliberate close) they close without an 'error' event, as
   * `http2session.destroy()` does, and readers see a premature close.
   */
  destroy(err?: Error): void {
    this.#fail(err, err, err ? GoAwayCode.InternalError : GoAwayCode.Normal);
  }

  #newStream(id: number): YamuxStream {
    const stream = this.#createStream({ session: this, id });
    if (sessionOf(stream) !== this || stream.id !== id) {
      throw new InvalidArgumentError('ERR_INVALID_OPTION', 'createStream must pass its init object to the YamuxStream constructor');
    }
    this.#streams.set(id, stream);
    return stream;
  }

  #onFrame(header: FrameHeader): void {
    switch (header.type) {
      case FrameType.Data:
        this.#onDataStart(header);
        return;
      case FrameType.WindowUpdate:
        this.#onWindowUpdate(header);
        return;
      case FrameType.Ping:
        this.#onPing(header);
        return;
      case FrameType.GoAway:
        this.#onGoAway(header);
        return;
    }
  }

  #onDataStart(header: FrameHeader): void {
    this.#dataTarget = undefined;
    const stream = this.#streamFor(header);
    if (!stream) return;
    const violation = stream[kDataStart](header.length);
    if (violation) {
      this.#protocolError(violation);
      return;
    }
    const held = this.#pendingAccept.get(stream);
    if (held !== undefined && header.length > 0) {
      const cost = header.length + PENDING_FRAME_COST;
      if (this.#pendingAcceptBytes + cost > this.#pendingAcceptBudget) {
        // Destroying sends RST and frees the stream's slot; the body is then skipped unbuffered.
        stream.destroy(
          new MuxError('ERR_STREAM_RESET', `stream ${stream.id} was reset before it was accepted: the streams waiting for accept would hold more than ${this.#pendingAcceptBudget} bytes`),
        );
        return;
      }
      this.#pendingAccept.set(stream, held + cost);
      this.#pendingAcceptBytes += cost;
    }
    this.#dataTarget = stream;
  }

  #onDataEnd(header: FrameHeader): void {
    const stream = this.#dataTarget;
    this.#dataTarget = undefined;
    stream?.[kFlags](header.flags);
  }

  #onWindowUpdate(header: FrameHeader): void {
    const stream = this.#streamFor(header);
    if (!stream) return;
    stream[kWindowUpdate](header.length);
    stream[kFlags](header.flags);
  }

  #onPing(header: FrameHeader): void {
    if (header.streamId !== 0) {
      this.#protocolError(`Ping frame on stream ${header.streamId} (must be 0)`);
    } else if (header.flags & Flag.SYN) {
      this.#sendControl(FrameType.Ping, Flag.ACK, 0, header.length);
    } else if (header.flags & Flag.ACK) {
      const ping = this.#pings.get(header.length);
      if (!ping) return;
      this.#pings.delete(header.length);
      this.#rtt = performance.now() - ping.start;
      this.#baseRtt = Math.min(this.#baseRtt ?? this.#rtt, this.#rtt);
      ping.done(undefined, this.#rtt);
    } else {
      this.#protocolError(`Ping frame with neither SYN nor ACK (flags ${header.flags})`);
    }
  }

  #onGoAway(header: FrameHeader): void {
    if (header.streamId !== 0) {
      this.#protocolError(`GoAway frame on stream ${header.streamId} (must be 0)`);
      return;
    }
    this.#remoteGoAway = true;
    if (header.length === GoAwayCode.Normal) {
      // The peer refuses new streams from now on (hashicorp answers their SYN with RST), so those
      // still waiting for theirs fail here, never having been announced.
      for (const stream of [...this.#awaitingSyn]) {
        stream.destroy(new MuxError('ERR_SESSION_CLOSED', `stream ${stream.id} was never opened: the peer is closing the session (GoAway received) and takes no new streams`));
      }
      return;
    }
    const err =
      header.length === GoAwayCode.ProtocolError
        ? new MuxError('ERR_MUX_PROTOCOL', 'the peer ended the session: it says we broke the yamux protocol')
        : new MuxError('ERR_SESSION_CLOSED', `the peer ended the session with error code ${header.length}`);
    this.#fail(err, err, undefined);
  }

  /**
   * The stream a Data or WindowUpdate frame is for, opening it on SYN. Undefined when the frame is
   * to be skipped (a stream closed or refused earlier) or was a protocol error.
   */
  #streamFor(header: FrameHeader): YamuxStream | undefined {
    const id = header.streamId;
    if (id === 0) {
      this.#protocolError(`${FrameType[header.type]} frame on stream 0`);
      return undefined;
    }
    if (header.flags & Flag.SYN) return this.#accept(id);
    const stream = this.#streams.get(id);
    if (stream && this.#awaitingSyn.has(stream)) {
      // One of our ids whose SYN has not gone out: the peer cannot know it.
      this.#protocolError(`${FrameType[header.type]} frame for stream ${id}, which was never opened`);
      return undefined;
    }
    if (stream) {
      if (header.flags & Flag.ACK) this.#acknowledged(id);
      return stream;
    }
    // Our ids are announced in the order they are taken, so all below the next one were opened;
    // the peer's may come in any order (PeerStreamIds).
    const ours = id % 2 === (this.#client ? 1 : 0);
    const existedBefore = ours ? id < this.#nextStreamId : this.#peerIds.wasOpened(id);
    if (!existedBefore) this.#protocolError(`${FrameType[header.type]} frame for stream ${id}, which was never opened`);
    return undefined;
  }

  #accept(id: number): YamuxStream | undefined {
    const ours = id % 2 === (this.#client ? 1 : 0);
    if (ours) {
      this.#protocolError(`peer opened stream ${id}, an id from our side's range`);
      return undefined;
    }
    // SYNs may come in any order (hashicorp sends each from the goroutine that took the id);
    // only an id that is open, or was used before, is a duplicate.
    if (this.#streams.has(id)) {
      this.#protocolError(`peer opened stream ${id}, which is already open`);
      return undefined;
    }
    if (!this.#peerIds.open(id)) {
      this.#protocolError(`peer opened stream ${id} again: that id was already used`);
      return undefined;
    }
    const tooManyPending = this.#deferAccept && this.#pendingAccept.size >= this.#maxPendingAccept;
    if (this.#state !== 'open' || this.#streams.size >= this.#maxStreams || tooManyPending || this.listenerCount('stream') === 0) {
      this.#sendControl(FrameType.WindowUpdate, Flag.RST, id, 0);
      return undefined;
    }
    const stream = this.#newStream(id);
    if (this.#deferAccept) this.#pendingAccept.set(stream, 0);
    stream[kOpen](Flag.ACK, this.#deferAccept);
    this.emit('stream', stream);
    // The listener may have destroyed the stream or the whole session.
    return this.#streams.get(id);
  }

  #keepAlive(): void {
    if (this.#keepAliveDeadline || !this.#canSend()) return;
    this.#keepAliveDeadline = setTimeout(() => {
      const err = new MuxError('ERR_KEEPALIVE_TIMEOUT', `the peer did not answer a keepalive ping within ${this.#keepAliveTimeout} ms`);
      this.#fail(err, err, undefined);
    }, this.#keepAliveTimeout);
    this.#keepAliveDeadline.unref();
    this.#sendPing(() => this.#clearKeepAliveDeadline());
  }

  #clearKeepAliveDeadline(): void {
    if (this.#keepAliveDeadline) clearTimeout(this.#keepAliveDeadline);
    this.#keepAliveDeadline = undefined;
  }

  #sendPing(done: PingDone): void {
    const id = this.#nextPingId;
    this.#nextPingId = id === MAX_U32 ? 1 : id + 1;
    this.#pings.set(id, { start: performance.now(), done });
    this.#sendControl(FrameType.Ping, Flag.SYN, 0, id);
  }

  #canSend(): boolean {
    return (this.#state === 'open' || this.#state === 'closing') && this.#transport.writable;
  }

  #sendControl(type: FrameType, flags: number, streamId: number, length: number): void {
    if (!this.#canSend()) return;
    if (!this.#transport.write(encodeHeader(type, flags, streamId, length))) this.#blocked = true;
    // Data waits for the transport; control replies cannot. A peer that keeps sending pings or
    // SYNs while never reading would otherwise grow this queue without bound.
    if (this.#transport.writableLength > MAX_UNREAD_BACKLOG) {
      const err = new MuxError('ERR_MUX_PROTOCOL', `the peer is not reading: ${this.#transport.writableLength} bytes queued for it`);
      this.#fail(err, err, undefined);
    }
  }

  #sendData(streamId: number, length: number, pieces: Buffer[]): void {
    const transport = this.#transport;
    // Separate writes keep the payload uncopied; the cork around #flush turns them into one writev.
    let more = transport.write(encodeHeader(FrameType.Data, 0, streamId, length));
    for (const piece of pieces) more = transport.write(piece);
    if (!more) this.#blocked = true;
  }

  #schedule(stream: YamuxStream): void {
    this.#ready.add(stream);
    this.#flush();
  }

  /** Gives ready streams turns, one frame each, until none is ready or the transport is full. */
  #flush(): void {
    if (this.#flushing || this.#blocked || !this.#canSend()) return;
    this.#flushing = true;
    this.#transport.cork();
    try {
      // A Set iterator also visits entries re-added during the loop, which is the round robin.
      for (const stream of this.#ready) {
        if (this.#blocked || !this.#canSend()) break;
        this.#ready.delete(stream);
        if (stream[kSendSome]()) this.#ready.add(stream);
      }
    } finally {
      this.#flushing = false;
      this.#transport.uncork();
    }
  }

  #release(stream: YamuxStream): void {
    if (this.#streams.get(stream.id) !== stream) return;
    this.#streams.delete(stream.id);
    this.#ready.delete(stream);
    this.#forgetPending(stream);
    this.#awaitingSyn.delete(stream);
    this.#acknowledged(stream.id);
    this.#endIfIdle();
  }

  #forgetPending(stream: YamuxStream): void {
    const held = this.#pendingAccept.get(stream);
    if (held === undefined) return;
    this.#pendingAccept.delete(stream);
    this.#pendingAcceptBytes -= held;
  }

  #endIfIdle(): void {
    if (this.#state === 'closing' && this.#streams.size === 0) this.#end();
  }

  /** Clean end: nothing is left to send or receive. The transport's 'close' settles the session. */
  #end(): void {
    this.#state = 'ending';
    this.#stopTimers();
    this.#parser.stop();
    this.#failPings(new MuxError('ERR_SESSION_CLOSED', 'the session closed before the ping was answered'));
    this.#transport.end();
    if (this.#transport.closed) this.#settle(undefined);
  }

  #onTransportEnd(): void {
    if (this.#state !== 'open' && this.#state !== 'closing') return;
    if (this.#streams.size === 0 && (this.#state === 'closing' || this.#remoteGoAway)) {
      this.#end();
      return;
    }
    const err = connectionClosed();
    this.#fail(err, err, undefined);
  }

  #onTransportError(cause: Error): void {
    // While ending, every stream is already done; the 'close' that follows settles cleanly.
    if (this.#state !== 'open' && this.#state !== 'closing') return;
    const err = new MuxError('ERR_SESSION_CLOSED', `the connection carrying this stream failed: ${cause.message}`);
    err.cause = cause;
    this.#fail(err, err, undefined);
  }

  #onTransportClose(): void {
    if (this.#state === 'ending') {
      this.#settle(undefined);
      return;
    }
    const err = connectionClosed();
    this.#fail(err, err, undefined);
  }

  #protocolError(message: string): void {
    const err = new MuxError('ERR_MUX_PROTOCOL', message);
    this.#fail(err, err, GoAwayCode.ProtocolError);
  }

  /**
   * Tears everything down at once. `result` is what `closed` settles to, `streamErr` what open
   * streams fail with; `goAway`, if given, is sent first on a best-effort basis (the transport
   * is destroyed right after, so a peer that is not reading may never see it).
   */
  #fail(result: Error | undefined, streamErr: Error | undefined, goAway: GoAwayCode | undefined): void {
    if (this.#state === 'closed') return;
    if (goAway !== undefined && this.#canSend()) {
      this.#transport.write(encodeHeader(FrameType.GoAway, 0, 0, goAway));
    }
    this.#state = 'closed';
    this.#stopTimers();
    this.#parser.stop();
    this.#dataTarget = undefined;
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#ready.clear();
    this.#pendingAccept.clear();
    this.#pendingAcceptBytes = 0;
    this.#awaitingSyn.clear();
    this.#awaitingAck.clear();
    for (const stream of streams) stream[kAbort](streamErr);
    this.#failPings(streamErr ?? new MuxError('ERR_SESSION_CLOSED', 'the session was destroyed'));
    this.#transport.destroy();
    this.#settle(result);
  }

  #failPings(err: Error): void {
    const pings = [...this.#pings.values()];
    this.#pings.clear();
    for (const ping of pings) ping.done(err);
  }

  #stopTimers(): void {
    if (this.#keepAliveTimer) clearInterval(this.#keepAliveTimer);
    this.#keepAliveTimer = undefined;
    this.#clearKeepAliveDeadline();
  }

  #settle(result: Error | undefined): void {
    this.#state = 'closed';
    this.#resolveClosed(result);
    this.emit('close', result);
  }
}
