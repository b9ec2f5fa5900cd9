import { Duplex } from 'node:stream';
import { Reason, VcClosedError } from '../errors.js';
import { ReceiveWindow } from '../flow-control/receive-window.js';
import type { RoutingId } from '../id/routing-id.js';
import { FrameType, encodeCredit, encodeReason, encodeWindow } from '../wire/index.js';
import type { DrainWaiter, HopConnection } from './connection.js';

/** Default receive window of a VC end: how many bytes the peer may send before we grant more. */
export const DEFAULT_VC_WINDOW = 256 * 1024;
/**
 * Largest receive window a VC end may have, announced or grown to: a peer's window is what this
 * process may queue toward it on the hop, so this bounds the memory a peer that never reads can
 * pin. Credit that would take the peer's window past it is a protocol error.
 */
export const MAX_VC_WINDOW = 16 << 20;
/** Largest Data frame a VC end sends: big enough to amortise headers, small enough to interleave VCs fairly. */
export const MAX_DATA_FRAME = 64 * 1024;
/**
 * A write this much over MAX_DATA_FRAME still leaves as one frame: the layers above write a full
 * frame of data plus their own header and tag, which would otherwise trail as a frame of a few
 * bytes, costing a hop header and a forwarding step at the proxy for every full one.
 */
const FRAME_SLACK = 4 * 1024;
/** Bytes a writer may have queued here before write() returns false: a full secure record, its header and tag, and then some. */
const WRITE_HIGH_WATER_MARK = 512 * 1024;

export interface CircuitInit {
  connection: HopConnection;
  vci: number;
  /** Credit the peer granted us (its receive window). */
  sendCredit: number;
  /** Our receive window, as announced to the peer: the floor it grows from. */
  receiveWindow: number;
  /** The largest our receive window grows to. */
  maxReceiveWindow: number;
  remoteRoutingId: RoutingId;
  remotePublicKey: Buffer;
}

/**
 * One end of a VC inside a process: an ordered byte stream carried in Data frames on a hop
 * connection. Sending spends the peer's credit and parks on zero; received bytes are queued
 * here and handed to the reader only when it asks (`_read`), and credit is returned for what
 * the reader took, so a slow reader holds at most one window. The window grows with the path
 * while the reader keeps up (ReceiveWindow, timed by the hop connection's round trip), and the
 * peer's window may grow likewise: credit may exceed what was sent, up to MAX_VC_WINDOW.
 */
export class VirtualCircuit extends Duplex implements DrainWaiter {
  readonly connection: HopConnection;
  readonly vci: number;
  readonly remoteRoutingId: RoutingId;
  readonly remotePublicKey: Buffer;
  private readonly window: ReceiveWindow;
  private sendCredit: number;
  /** Chunks of the write in progress that wait for credit, oldest first. */
  private parked: Buffer[] = [];
  private parkedBytes = 0;
  private parkedCallback: ((err?: Error | null) => void) | undefined;
  private readonly received: Buffer[] = [];
  private receivedBytes = 0;
  /** Bytes the peer may still send: granted and not yet received. */
  private peerCredit: number;
  private readerWaiting = false;
  private closedOnWire = false;
  private remoteEnded = false;
  private readableEndPushed = false;
  bytesSent = 0;
  bytesReceived = 0;

  constructor(init: CircuitInit) {
    // A writer (the secure channel) hands over records of up to 256 KiB plus their headers: one
    // such write should not, by itself, report the circuit full.
    super({ allowHalfOpen: false, readableHighWaterMark: 64 * 1024, writableHighWaterMark: WRITE_HIGH_WATER_MARK });
    this.connection = init.connection;
    this.vci = init.vci;
    this.sendCredit = init.sendCredit;
    this.window = new ReceiveWindow(init.receiveWindow, init.maxReceiveWindow);
    this.peerCredit = init.receiveWindow;
    this.remoteRoutingId = init.remoteRoutingId;
    this.remotePublicKey = init.remotePublicKey;
  }

  /** Bytes received and not yet taken by the reader. */
  get queuedBytes(): number {
    return this.receivedBytes;
  }

  /** Our receive window now: from the announced one up to its maximum. */
  get receiveWindow(): number {
    return this.window.size;
  }

  handleData(parts: readonly Buffer[], length: number): void {
    if (this.destroyed) return;
    if (length > this.peerCredit) {
      this.abort(Reason.Protocol, `peer ${this.remoteRoutingId} sent ${length} bytes with only ${this.peerCredit} bytes of credit`);
      return;
    }
    this.peerCredit -= length;
    this.window.touch();
    this.bytesReceived += length;
    for (const part of parts) this.received.push(part);
    this.receivedBytes += length;
    if (this.readerWaiting) this.deliver();
  }

  handleCredit(amount: number): void {
    if (this.destroyed) return;
    const credit = this.sendCredit + amount;
    if (credit > MAX_VC_WINDOW) {
      // Beyond the largest window, the peer could make us queue toward it without bound.
      this.abort(Reason.Protocol, `peer ${this.remoteRoutingId} granted ${credit} bytes of credit, more than the largest VC window of ${MAX_VC_WINDOW} bytes`);
      return;
    }
    this.sendCredit = credit;
    this.flushParked();
  }

  /**
   * The receiver asks back credit it granted and we have not used (a proxy whose window for this
   * VC shrank while it was idle): give back what we have, up to `amount`, and say how much.
   */
  handleCreditRevoke(amount: number): void {
    if (this.destroyed || this.closedOnWire) return;
    const returned = Math.min(amount, this.sendCredit);
    this.sendCredit -= returned;
    this.connection.send(FrameType.CreditReturn, this.vci, encodeWindow(returned));
  }

  /** The sender gave back credit (this end never revokes, but the protocol lets a peer return some). */
  handleCreditReturn(amount: number): void {
    if (this.destroyed) return;
    if (amount > this.peerCredit) {
      this.abort(Reason.Protocol, `peer ${this.remoteRoutingId} returned ${amount} bytes of credit, more than the ${this.peerCredit} it had`);
      return;
    }
    this.peerCredit -= amount;
  }

  /** The peer (or the proxy on its behalf) closed the VC. A clean close still delivers what was queued. */
  handleClose(reason: number, message: string): void {
    this.closedOnWire = true;
    if (reason !== Reason.Normal) {
      this.destroy(new VcClosedError(reason, message));
      return;
    }
    this.failParked(() => new VcClosedError(Reason.Normal, `VC closed by ${this.remoteRoutingId}`));
    this.remoteEnded = true;
    if (this.received.length === 0) this.endReadable();
  }

  /** Closes the VC on the wire with a reason and tears this end down with the matching error. */
  abort(reason: Reason, message: string): void {
    if (!this.closedOnWire) {
      this.closedOnWire = true;
      this.connection.send(FrameType.CloseVc, this.vci, encodeReason(reason, message));
    }
    this.destroy(new VcClosedError(reason, message));
  }

  override _read(): void {
    this.readerWaiting = true;
    this.deliver();
  }

  private deliver(): void {
    while (this.received.length > 0) {
      const chunk = this.received.shift()!;
      this.receivedBytes -= chunk.length;
      if (!this.push(chunk)) {
        this.readerWaiting = false;
        break;
      }
    }
    if (this.remoteEnded) {
      if (this.received.length === 0) this.endReadable();
      return;
    }
    this.grantCredit();
  }

  private endReadable(): void {
    if (this.readableEndPushed) return;
    this.readableEndPushed = true;
    this.push(null);
  }

  /** Fails a write parked for credit; the error is only built when there is one to fail. */
  private failParked(reason: () => Error): void {
    const callback = this.parkedCallback;
    if (!callback) return;
    this.parked = [];
    this.parkedBytes = 0;
    this.parkedCallback = undefined;
    callback(reason());
  }

  /**
   * Tops the peer's credit up to the window, less what waits here for the reader. Batched: one
   * Credit frame per quarter window keeps the sender streaming without a frame per chunk.
   */
  private grantCredit(): void {
    if (this.closedOnWire) return;
    const window = this.window.size;
    const room = (size: number): number => size - this.peerCredit - this.receivedBytes;
    let amount = room(window);
    if (amount < window / 4) return;
    const tuned = this.window.beforeGrant(amount, this.connection.baseRtt);
    if (tuned !== window) amount = room(tuned);
    this.peerCredit += amount;
    this.connection.send(FrameType.Credit, this.vci, encodeCredit(amount));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.park([chunk], callback);
  }

  /**
   * Small writes that arrive together (a multiplexer's frame header and its payload, a record's
   * header, body and tag) leave as one Data frame of several parts: one hop header and one
   * forwarding step at the proxy instead of one per write, and no copy.
   */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.park(chunks.map(({ chunk }) => chunk), callback);
  }

  private park(chunks: Buffer[], callback: (err?: Error | null) => void): void {
    this.parked = [];
    this.parkedBytes = 0;
    for (const chunk of chunks) {
      if (chunk.length === 0) continue;
      this.parked.push(chunk);
      this.parkedBytes += chunk.length;
    }
    this.parkedCallback = callback;
    this.flushParked();
  }

  onDrain(): void {
    this.flushParked(1);
  }

  /** Sends what the write in progress has, as far as credit goes and the connection takes it (at most `frames` frames). */
  private flushParked(frames = Infinity): void {
    const parked = this.parked;
    if (this.parkedCallback === undefined) return;
    if (this.closedOnWire || !this.connection.isOpen) {
      this.failParked(() => new VcClosedError(Reason.ConnectionLost, `VC to ${this.remoteRoutingId} is closed`));
      return;
    }
    while (parked.length > 0 && this.sendCredit > 0) {
      if (frames-- === 0 || this.connection.congested) {
        // Our turn comes again when the socket drains: the bytes wait here, not in its buffer.
        this.connection.waitForDrain(this);
        return;
      }
      const budget = Math.min(this.sendCredit, this.parkedBytes <= MAX_DATA_FRAME + FRAME_SLACK ? this.parkedBytes : MAX_DATA_FRAME);
      const parts: Buffer[] = [];
      let size = 0;
      while (parked.length > 0 && size < budget) {
        const chunk = parked[0];
        const take = Math.min(chunk.length, budget - size);
        if (take === chunk.length) {
          parked.shift();
          parts.push(chunk);
        } else {
          parked[0] = chunk.subarray(take);
          parts.push(chunk.subarray(0, take));
        }
        size += take;
      }
      if (size > 0) this.connection.send(FrameType.Data, this.vci, parts.length === 1 ? parts[0] : parts);
      this.sendCredit -= size;
      this.parkedBytes -= size;
      this.bytesSent += size;
    }
    if (parked.length > 0) return;
    const callback = this.parkedCallback;
    this.parkedCallback = undefined;
    callback();
  }

  override _final(callback: (err?: Error | null) => void): void {
    // A VC has no half-close of its own: the multiplexer above finishes its streams first.
    if (!this.closedOnWire) {
      this.closedOnWire = true;
      this.connection.send(FrameType.CloseVc, this.vci, encodeReason(Reason.Normal, 'closed'));
    }
    this.endReadable();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.closedOnWire) {
      this.closedOnWire = true;
      const reason = err instanceof VcClosedError ? err.reason : err ? Reason.Internal : Reason.Normal;
      this.connection.send(FrameType.CloseVc, this.vci, encodeReason(reason, err ? err.message : 'closed'));
    }
    this.connection.cancelDrain(this);
    this.failParked(() => err ?? new VcClosedError(Reason.Normal, 'VC closed'));
    this.received.length = 0;
    this.receivedBytes = 0;
    callback(err);
  }
}
