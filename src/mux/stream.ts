import { Duplex } from 'node:stream';
import { MuxError } from '../errors.js';
import { ReceiveWindow } from '../flow-control/receive-window.js';
import { Flag, FrameType, INITIAL_STREAM_WINDOW, MAX_U32 } from './frame.js';
import { kAbort, kData, kDataStart, kFlags, kSessionHandle, kOpen, kSendSome, kWindowUpdate, type SessionHandle } from './internal.js';
import type { YamuxSession } from './session.js';

/** What the session hands to a stream constructor; subclasses pass it through to `super`. */
export interface YamuxStreamInit {
  session: YamuxSession;
  id: number;
}

/**
 * The session of each stream, for the session's own check that a createStream passed its init
 * through. Kept here rather than on the stream so that a stream (a manager's Flow) offers no
 * path, not even a symbol-keyed one, into the session beneath it.
 */
const sessions = new WeakMap<YamuxStream, YamuxSession>();

/** The session `stream` was constructed for, if it was constructed from a session's init. */
export function sessionOf(stream: YamuxStream): YamuxSession | undefined {
  return sessions.get(stream);
}

type WriteCallback = (err?: Error | null) => void;

/** The write being sent: the chunks of one `_write`/`_writev` call, consumed front to back. */
interface PendingWrite {
  chunks: Buffer[];
  index: number;
  offset: number;
  remaining: number;
  callback: WriteCallback;
}

/**
 * One yamux stream: a Node Duplex with half-close. `end()` sends FIN after the last byte, a FIN
 * from the peer ends the readable side, `destroy()` sends RST unless both sides had already
 * closed, and an RST from the peer destroys the stream with ERR_STREAM_RESET.
 *
 * Flow control: the peer may send at most one receive window ahead of what this side has read.
 * Credit is returned as the consumer actually reads (from `_read` and after every `read()` has
 * taken its bytes out), so a reader that stops reading stops the sender once one window is
 * buffered here. The window starts at the session's `streamWindow` and grows toward
 * `maxStreamWindow` while the reader keeps up and the sender is held back by the window alone
 * (see ReceiveWindow), so one flow can fill a long path; idle, it returns to the start.
 *
 * On a session with `deferAccept`, a stream the peer opened is pending until `markAccepted()`:
 * it returns no credit, so it never holds more than the spec's initial window, and the bytes it
 * buffers count against the session's pending-accept budget.
 */
export class YamuxStream extends Duplex {
  readonly id: number;

  readonly #session: SessionHandle;
  /** Bytes the peer has allowed us to send and we have not sent yet. */
  #sendWindow = INITIAL_STREAM_WINDOW;
  /** Bytes we have allowed the peer to send and it has not sent yet. */
  #recvWindow: number;
  /** How far ahead of the reader the peer may be: tuned to the path. */
  readonly #window: ReceiveWindow;
  /**
   * Bytes of the Data frame being received that are already charged to the window (at its header)
   * but not yet pushed: they are on their way into the buffer, so they are not room to grant.
   */
  #arriving = 0;
  #pending: PendingWrite | undefined;
  #localFin = false;
  #remoteFin = false;
  #released = false;
  /** The peer reset the stream or the session is gone, so sending RST would be pointless. */
  #resetNotNeeded = false;
  #awaitingAccept = false;
  /**
   * False until the SYN or ACK is sent. A stream this side opened beyond the session's
   * `openBacklog` waits in that state: it sends nothing, and a FIN asked for meanwhile follows
   * the SYN.
   */
  #announced = false;
  #finAfterSyn = false;

  constructor(init: YamuxStreamInit) {
    super({ allowHalfOpen: true });
    this.id = init.id;
    sessions.set(this, init.session);
    this.#session = init.session[kSessionHandle];
    // Counted as already granted so that a _read before the SYN/ACK goes out cannot announce it twice.
    this.#recvWindow = this.#session.streamWindow;
    this.#window = new ReceiveWindow(this.#session.streamWindow, this.#session.maxStreamWindow);
  }

  /** The receive window this stream grants its peer now: from `streamWindow` up to `maxStreamWindow`. */
  get receiveWindow(): number {
    return this.#window.size;
  }

  /**
   * Says the application has taken this stream, so it gets the window of an ordinary stream. For
   * a caller that set the session's `deferAccept`; on any other stream it does nothing.
   */
  markAccepted(): void {
    if (!this.#awaitingAccept) return;
    this.#awaitingAccept = false;
    this.#session.accepted(this);
    // The window beyond the spec's initial one was held back from the ACK; it goes out now as it would have then.
    const extra = this.#session.streamWindow - INITIAL_STREAM_WINDOW;
    if (extra > 0 && !this.#remoteFin && !this.destroyed && this.#session.canSend()) {
      this.#recvWindow += extra;
      this.#session.sendControl(FrameType.WindowUpdate, 0, this.id, extra);
    }
    // A _read that came while pending returned nothing, and Node will not call it again until more data is pushed.
    this.#returnCredit(true);
  }

  override _read(): void {
    // Node asks for more: the consumer is waiting, so the peer must not be left without credit.
    this.#returnCredit(true);
  }

  /**
   * Node calls `_read` *before* it takes the requested bytes out of the buffer, and does not call
   * it again until something is pushed. So a `_read` that sees a full buffer (as `read(n)` does
   * when it takes exactly one window, n being a power of two at least the window: the mark is then
   * raised to exactly n) can grant nothing, and nothing would ever be granted again: a stall with
   * the reader waiting, nothing buffered and the peer at zero. The credit is therefore reckoned
   * again here, once the bytes are gone.
   */
  override read(size?: number): ReturnType<Duplex['read']> {
    const chunk: unknown = super.read(size);
    // null: the consumer wants more than is buffered (or read(0), Node's own request for more).
    this.#returnCredit(chunk === null);
    return chunk;
  }

  /**
   * Grants the peer whatever room the buffer has: up to the window, or up to the high-water mark
   * that `read(n)` raised, less what is buffered, what the peer may still send and what is
   * arriving. Updates are batched to half a window, except for a consumer that is `starving`
   * while the peer has no credit left, since then nothing else would ever send one.
   */
  #returnCredit(starving: boolean): void {
    if (!this.#announced || this.#awaitingAccept || this.#remoteFin || this.destroyed || !this.#session.canSend()) return;
    const window = this.#window.size;
    const room = (size: number): number =>
      // A consumer calling read(n) with n above the window raises readableHighWaterMark to n and
      // must be able to buffer that much, or it would wait forever for a message larger than the window.
      Math.min(Math.max(size, this.readableHighWaterMark) - this.readableLength - this.#arriving - this.#recvWindow, MAX_U32);
    let credit = room(window);
    if (credit <= 0) return;
    if (credit < window / 2 && (this.#recvWindow > 0 || !starving)) return;
    const tuned = this.#window.beforeGrant(credit, this.#session.baseRtt());
    if (tuned !== window) credit = room(tuned);
    this.#recvWindow += credit;
    this.#session.sendControl(FrameType.WindowUpdate, 0, this.id, credit);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.#enqueue([chunk], chunk.length, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: WriteCallback): void {
    let total = 0;
    const buffers = chunks.map(({ chunk }) => {
      total += chunk.length;
      return chunk;
    });
    this.#enqueue(buffers, total, callback);
  }

  override _final(callback: WriteCallback): void {
    if (!this.#session.canSend()) {
      callback(new MuxError('ERR_SESSION_CLOSED', `cannot end stream ${this.id}: its session is closed`));
      return;
    }
    // Every earlier write's callback has run, so all its bytes are already with the transport.
    this.#localFin = true;
    if (!this.#announced) {
      // Nothing was written (a write waits for the SYN), so the FIN simply follows the SYN.
      this.#finAfterSyn = true;
      callback();
      return;
    }
    this.#session.sendControl(FrameType.WindowUpdate, Flag.FIN, this.id, 0);
    if (this.#remoteFin) this.#release();
    callback();
  }

  override _destroy(err: Error | null, callback: WriteCallback): void {
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.callback(err ?? new MuxError('ERR_STREAM_RESET', `stream ${this.id} was destroyed before this write was sent`));
    const fullyClosed = this.#localFin && this.#remoteFin;
    // A stream whose SYN never went out is unknown to the peer: nothing to reset.
    if (this.#announced && !fullyClosed && !this.#resetNotNeeded && this.#session.canSend()) {
      this.#session.sendControl(FrameType.WindowUpdate, Flag.RST, this.id, 0);
    }
    this.#release();
    callback(err);
  }

  /**
   * Announces the stream (SYN) or accepts it (ACK), carrying any window beyond the spec's initial
   * one, except for a stream left awaiting markAccepted(), which gets only the initial window.
   */
  [kOpen](flag: number, awaitingAccept = false): void {
    if (this.#announced || this.destroyed) return;
    this.#announced = true;
    this.#awaitingAccept = awaitingAccept;
    if (awaitingAccept) this.#recvWindow = INITIAL_STREAM_WINDOW;
    this.#session.sendControl(FrameType.WindowUpdate, flag, this.id, awaitingAccept ? 0 : this.#session.streamWindow - INITIAL_STREAM_WINDOW);
    // What a stream that waited for its SYN was asked to do meanwhile.
    if (this.#finAfterSyn) {
      this.#session.sendControl(FrameType.WindowUpdate, Flag.FIN, this.id, 0);
    } else if (this.#pending && this.#sendWindow > 0) {
      this.#session.schedule(this);
    }
    // read(n) may have raised the high-water mark while it waited.
    this.#returnCredit(false);
  }

  /** A Data frame of `length` bytes starts; returns why it is a protocol violation, if it is one. */
  [kDataStart](length: number): string | undefined {
    if (this.#remoteFin) return `Data frame on stream ${this.id} after its FIN`;
    if (length > this.#recvWindow) {
      return `Data frame of ${length} bytes on stream ${this.id} overruns its receive window of ${this.#recvWindow} bytes`;
    }
    this.#recvWindow -= length;
    this.#arriving = length;
    this.#window.touch();
    return undefined;
  }

  [kData](piece: Buffer): void {
    this.#arriving -= piece.length;
    if (this.destroyed) return;
    // A view would keep the transport's whole chunk alive, however small the piece charged to the budget.
    this.push(this.#awaitingAccept ? Buffer.from(piece) : piece);
  }

  /** Applies FIN/RST from a frame, after that frame's body (if any) has been delivered. */
  [kFlags](flags: number): void {
    if (this.destroyed) return;
    if (flags & Flag.RST) {
      this.#resetNotNeeded = true;
      this.destroy(new MuxError('ERR_STREAM_RESET', `the peer reset stream ${this.id}`));
      return;
    }
    if (flags & Flag.FIN && !this.#remoteFin) {
      this.#remoteFin = true;
      this.push(null);
      if (this.#localFin) this.#release();
    }
  }

  [kWindowUpdate](delta: number): void {
    this.#sendWindow += delta;
    if (delta > 0 && this.#pending && !this.destroyed) this.#session.schedule(this);
  }

  /**
   * Sends one Data frame from the pending write, as large as the frame limit and the send window
   * allow. Returns whether the stream could use another turn right away.
   */
  [kSendSome](): boolean {
    const pending = this.#pending;
    if (!pending || !this.#announced || this.destroyed || this.#sendWindow === 0) return false;
    const length = Math.min(this.#session.maxFrameSize, this.#sendWindow, pending.remaining);
    const pieces: Buffer[] = [];
    let left = length;
    while (left > 0) {
      const chunk = pending.chunks[pending.index];
      const take = Math.min(left, chunk.length - pending.offset);
      if (take > 0) pieces.push(take === chunk.length ? chunk : chunk.subarray(pending.offset, pending.offset + take));
      left -= take;
      pending.offset += take;
      if (pending.offset === chunk.length) {
        pending.index++;
        pending.offset = 0;
      }
    }
    this.#sendWindow -= length;
    pending.remaining -= length;
    this.#session.sendData(this.id, length, pieces);
    if (pending.remaining > 0) return this.#sendWindow > 0;
    this.#pending = undefined;
    // May synchronously start the next write (Node flushes its buffer from here), which reschedules us.
    pending.callback();
    return this.#pending !== undefined && this.#sendWindow > 0;
  }

  /** The session is gone: fail the stream without trying to tell the peer. */
  [kAbort](err: Error | undefined): void {
    this.#resetNotNeeded = true;
    this.destroy(err);
  }

  #enqueue(chunks: Buffer[], total: number, callback: WriteCallback): void {
    if (!this.#session.canSend()) {
      callback(new MuxError('ERR_SESSION_CLOSED', `cannot write to stream ${this.id}: its session is closed`));
      return;
    }
    if (total === 0) {
      callback();
      return;
    }
    this.#pending = { chunks, index: 0, offset: 0, remaining: total, callback };
    // With a zero window the write stays parked until the peer's WindowUpdate reschedules it;
    // before the SYN has gone out, until kOpen schedules it.
    if (this.#announced && this.#sendWindow > 0) this.#session.schedule(this);
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#session.release(this);
  }
}
