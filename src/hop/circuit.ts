import { Duplex } from 'node:stream';
import { Reason, VcClosedError } from '../errors.js';
import type { RoutingId } from '../id/routing-id.js';
import { FrameType, encodeCredit, encodeReason } from '../wire/index.js';
import type { HopConnection } from './connection.js';

/** Default receive window of a VC end: how many bytes the peer may send before we grant more. */
export const DEFAULT_VC_WINDOW = 256 * 1024;
/**
 * Largest receive window a process lets a peer announce: its window is what this process may
 * queue toward it on the hop, so it bounds the memory a peer that never reads can pin. A proxy
 * enforces its own, smaller, maximum on the VCs it routes.
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

export interface CircuitInit {
  connection: HopConnection;
  vci: number;
  /** Credit the peer granted us (its receive window). */
  sendCredit: number;
  /** Our receive window, as announced to the peer. */
  receiveWindow: number;
  remoteRoutingId: RoutingId;
  remotePublicKey: Buffer;
}

/**
 * One end of a VC inside a process: an ordered byte stream carried in Data frames on a hop
 * connection. Sending spends the peer's credit and parks on zero; received bytes are queued
 * here and handed to the reader only when it asks (`_read`), and credit is returned for what
 * the reader took, so a slow reader holds at most one window.
 */
export class VirtualCircuit extends Duplex {
  readonly connection: HopConnection;
  readonly vci: number;
  readonly remoteRoutingId: RoutingId;
  readonly remotePublicKey: Buffer;
  readonly receiveWindow: number;
  /** The peer's receive window: credit never exceeds it. */
  readonly sendWindow: number;

  private sendCredit: number;
  /** Chunks of the write in progress that wait for credit, oldest first. */
  private parked: Buffer[] = [];
  private parkedBytes = 0;
  private parkedCallback: ((err?: Error | null) => void) | undefined;
  private readonly received: Buffer[] = [];
  private receivedBytes = 0;
  /** Bytes the peer has sent that we have not yet credited back. */
  private uncredited = 0;
  /** Bytes handed to the reader but not yet credited back. */
  private consumedUncredited = 0;
  private readerWaiting = false;
  private closedOnWire = false;
  private remoteEnded = false;
  private readableEndPushed = false;
  bytesSent = 0;
  bytesReceived = 0;

  constructor(init: CircuitInit) {
    super({ allowHalfOpen: false, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.connection = init.connection;
    this.vci = init.vci;
    this.sendCredit = init.sendCredit;
    this.sendWindow = init.sendCredit;
    this.receiveWindow = init.receiveWindow;
    this.remoteRoutingId = init.remoteRoutingId;
    this.remotePublicKey = init.remotePublicKey;
  }

  /** Bytes received and not yet taken by the reader. */
  get queuedBytes(): number {
    return this.receivedBytes;
  }

  handleData(parts: readonly Buffer[], length: number): void {
    if (this.destroyed) return;
    if (this.uncredited + length > this.receiveWindow) {
      this.abort(Reason.Protocol, `peer ${this.remoteRoutingId} sent ${length} bytes with only ${this.receiveWindow - this.uncredited} bytes of credit`);
      return;
    }
    this.uncredited += length;
    this.bytesReceived += length;
    for (const part of parts) this.received.push(part);
    this.receivedBytes += length;
    if (this.readerWaiting) this.deliver();
  }

  handleCredit(amount: number): void {
    if (this.destroyed) return;
    if (this.sendCredit + amount > this.sendWindow) {
      // Credit only returns what was sent; more would let the peer make us queue without bound.
      this.abort(Reason.Protocol, `peer ${this.remoteRoutingId} granted credit beyond its announced window of ${this.sendWindow} bytes`);
      return;
    }
    this.sendCredit += amount;
    this.flushParked();
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
      this.consumedUncredited += chunk.length;
      if (!this.push(chunk)) {
        this.readerWaiting = false;
        break;
      }
    }
    if (this.remoteEnded) {
      if (this.received.length === 0) this.endReadable();
      return;
    }
    // Batch credit: one Credit frame per quarter window keeps the sender streaming without a frame per chunk.
    if (this.consumedUncredited >= this.receiveWindow / 4) this.grantCredit();
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

  private grantCredit(): void {
    const amount = this.consumedUncredited;
    if (amount === 0 || this.closedOnWire) return;
    this.consumedUncredited = 0;
    this.uncredited -= amount;
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

  private flushParked(): void {
    const parked = this.parked;
    if (this.parkedCallback === undefined) return;
    if (this.closedOnWire || !this.connection.isOpen) {
      this.failParked(() => new VcClosedError(Reason.ConnectionLost, `VC to ${this.remoteRoutingId} is closed`));
      return;
    }
    while (parked.length > 0 && this.sendCredit > 0) {
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
    this.failParked(() => err ?? new VcClosedError(Reason.Normal, 'VC closed'));
    this.received.length = 0;
    this.receivedBytes = 0;
    callback(err);
  }
}
