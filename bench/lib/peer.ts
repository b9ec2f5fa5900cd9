import type { Duplex } from 'node:stream';
import { nowNs, sendBytes, type Receipt } from './payload.js';

/**
 * The byte protocol the bench speaks on every stream (TCP connection or ridproxy flow), so the
 * same sink serves every path and the relays in between stay byte-transparent. The client's first
 * byte picks what the sink does with the stream:
 *   'B' + u64 n  bulk: the sink sends n bytes while counting what it receives; when both are done
 *                it appends a 24-byte trailer (bytes, firstNs, lastNs as f64) and ends. Upload is
 *                thus timed at its receiver, the sink, and reported back in band.
 *   'E'          echo everything until the client ends.
 *   'S'          stall: the sink never reads again (a stalled reader).
 */
export const OP_BULK = 0x42;
export const OP_ECHO = 0x45;
export const OP_STALL = 0x53;
const BULK_HEADER = 9;
const TRAILER = 24;

export function bulkHeader(downBytes: number): Buffer {
  const header = Buffer.alloc(BULK_HEADER);
  header[0] = OP_BULK;
  header.writeBigUInt64BE(BigInt(downBytes), 1);
  return header;
}

/** Settles when the readable side ends; rejects on error or on a close without end (a reset). */
export function ended(stream: Duplex): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (stream.readableEnded) {
      resolve();
      return;
    }
    const cleanup = (): void => {
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onEnd = (): void => {
      cleanup();
      resolve();
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onClose = (): void => {
      cleanup();
      if (stream.readableEnded) resolve();
      else reject(new Error('stream closed before its end'));
    };
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}

/** Sink side: reads the op and serves the stream. Never throws; a broken stream is just dropped. */
export function servePeer(stream: Duplex): void {
  stream.on('error', () => stream.destroy());
  let head: Buffer = Buffer.alloc(0);
  const onEnd = (): void => {
    // The client left before choosing an op (e.g. a readiness probe): close our side too.
    stream.end();
  };
  const onData = (chunk: Buffer): void => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const need = head[0] === OP_BULK ? BULK_HEADER : 1;
    if (head.length < need) return;
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.pause();
    const rest = head.subarray(need);
    switch (head[0]) {
      case OP_BULK:
        void serveBulk(stream, Number(head.readBigUInt64BE(1)), rest).catch(() => stream.destroy());
        break;
      case OP_ECHO:
        if (rest.length > 0) stream.write(rest);
        stream.pipe(stream);
        break;
      case OP_STALL:
        break;
      default:
        stream.destroy();
    }
  };
  stream.on('data', onData);
  stream.on('end', onEnd);
}

async function serveBulk(stream: Duplex, downBytes: number, rest: Buffer): Promise<void> {
  const receipt: Receipt = { bytes: rest.length, firstNs: rest.length > 0 ? nowNs() : 0, lastNs: rest.length > 0 ? nowNs() : 0 };
  stream.on('data', (chunk: Buffer) => {
    const t = nowNs();
    if (receipt.bytes === 0) receipt.firstNs = t;
    receipt.bytes += chunk.length;
    receipt.lastNs = t;
  });
  // servePeer paused the stream explicitly; a 'data' listener alone would not restart it.
  stream.resume();
  await Promise.all([ended(stream), sendBytes(stream, downBytes)]);
  const trailer = Buffer.alloc(TRAILER);
  trailer.writeDoubleBE(receipt.bytes, 0);
  trailer.writeDoubleBE(receipt.firstNs, 8);
  trailer.writeDoubleBE(receipt.lastNs, 16);
  stream.end(trailer);
}

/**
 * Client side of a bulk stream: sends `upBytes` then ends, receives `downBytes` and the trailer.
 * Returns both directions' receipts, each timed by its own receiver.
 */
export async function bulkClient(stream: Duplex, upBytes: number, downBytes: number): Promise<{ up: Receipt; down: Receipt }> {
  const down: Receipt = { bytes: 0, firstNs: 0, lastNs: 0 };
  const tail: Buffer[] = [];
  let tailBytes = 0;
  stream.on('data', (chunk: Buffer) => {
    const t = nowNs();
    const data = Math.min(chunk.length, downBytes - down.bytes);
    if (data > 0) {
      if (down.bytes === 0) down.firstNs = t;
      down.bytes += data;
      down.lastNs = t;
    }
    if (data < chunk.length) {
      tail.push(chunk.subarray(data));
      tailBytes += chunk.length - data;
    }
  });
  const done = ended(stream);
  stream.write(bulkHeader(downBytes));
  await sendBytes(stream, upBytes);
  stream.end();
  await done;
  if (down.bytes !== downBytes || tailBytes !== TRAILER) {
    throw new Error(`bulk stream ended with ${down.bytes}/${downBytes} data bytes and a ${tailBytes}-byte trailer`);
  }
  const trailer = Buffer.concat(tail);
  const up: Receipt = { bytes: trailer.readDoubleBE(0), firstNs: trailer.readDoubleBE(8), lastNs: trailer.readDoubleBE(16) };
  if (up.bytes !== upBytes) throw new Error(`the sink received ${up.bytes} of ${upBytes} bytes`);
  return { up, down };
}

/**
 * Counts echoed bytes on an 'E' stream and lets a caller wait until a total has come back, without
 * a new listener per message (which would cost more than a loopback round trip).
 */
export class EchoReader {
  private received = 0;
  private want = 0;
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private fail: ((err: Error) => void) | undefined;

  constructor(private readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      if (this.wake && this.received >= this.want) {
        const wake = this.wake;
        this.wake = undefined;
        wake();
      }
    });
    const broken = (err?: Error): void => {
      this.failure ??= err ?? new Error('stream ended during an echo');
      this.fail?.(this.failure);
    };
    stream.on('error', broken);
    stream.on('end', () => broken());
    stream.on('close', () => broken());
  }

  /** Sends `message` and resolves when as many bytes have come back. */
  roundTrip(message: Buffer): Promise<void> {
    this.want += message.length;
    this.stream.write(message);
    if (this.received >= this.want) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.wake = resolve;
      this.fail = reject;
    });
  }
}

export const ECHO_HEADER = Buffer.from([OP_ECHO]);
export const STALL_HEADER = Buffer.from([OP_STALL]);
