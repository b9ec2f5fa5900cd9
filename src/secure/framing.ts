import { ProtocolError } from '../errors.js';

/**
 * The frames carried inside the TLS stream. TLS already authenticates every byte; these frames
 * exist because node:tls reports a peer's close_notify and a bare TCP FIN (which anyone on the
 * path can forge) the same way, as 'end'. An explicit End frame lets a receiver tell a complete
 * stream from one cut short, and the verdict frames let each side learn whether the other
 * accepted it before any data flows.
 */
export enum FrameType {
  Data = 0,
  /** This side authenticated and authorized the peer. */
  Accept = 1,
  /** This side's authorize check refused the peer; the payload is a reason for people. */
  Unauthorized = 2,
  /** The peer's key is not the one this side expected (it dialed another routing ID). */
  Unauthenticated = 3,
  /** Clean end of this direction: nothing follows. */
  End = 4,
}

/** type (1 byte) + payload length (3 bytes, big-endian) */
export const HEADER_SIZE = 4;
export const MAX_PAYLOAD = 0xffffff;
/** Control payloads are only short reasons; a larger one is refused before it is buffered. */
export const MAX_CONTROL_PAYLOAD = 1024;

export function frameHeader(type: FrameType, length: number): Buffer {
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt32BE(length, 0);
  header[0] = type;
  return header;
}

export interface FrameSink {
  /** Part of a Data frame's payload, delivered as it arrives rather than once the frame is whole. */
  data(payload: Buffer): void;
  /** A whole control frame (any type but Data). */
  control(type: FrameType, payload: Buffer): void;
}

const EMPTY = Buffer.alloc(0);

/**
 * Incremental frame decoder: any split of the byte stream into chunks gives the same calls. Data
 * payloads are passed on as views of the input chunks, so the reader copies only headers and
 * control payloads.
 */
export class FrameReader {
  readonly #sink: FrameSink;
  readonly #header = Buffer.alloc(HEADER_SIZE);
  #headerFill = 0;
  /** The frame whose payload is being read, or undefined between frames. */
  #type: FrameType | undefined;
  #remaining = 0;
  #control: Buffer[] = [];

  constructor(sink: FrameSink) {
    this.#sink = sink;
  }

  /** Throws ProtocolError for an unknown type or an oversized control frame. */
  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#type === undefined) {
        const n = Math.min(HEADER_SIZE - this.#headerFill, chunk.length - offset);
        chunk.copy(this.#header, this.#headerFill, offset, offset + n);
        this.#headerFill += n;
        offset += n;
        if (this.#headerFill < HEADER_SIZE) return;
        this.#headerFill = 0;
        this.#startFrame(this.#header[0], this.#header.readUIntBE(1, 3));
        continue;
      }
      const n = Math.min(this.#remaining, chunk.length - offset);
      const part = chunk.subarray(offset, offset + n);
      offset += n;
      this.#remaining -= n;
      if (this.#type === FrameType.Data) {
        if (this.#remaining === 0) this.#type = undefined;
        this.#sink.data(part);
      } else {
        this.#control.push(part);
        if (this.#remaining === 0) this.#finishControl(this.#type, Buffer.concat(this.#control));
      }
    }
  }

  #startFrame(type: number, length: number): void {
    if (FrameType[type] === undefined) throw new ProtocolError('ERR_PROTOCOL', `secure channel: unknown frame type ${type}`);
    if (type !== FrameType.Data && length > MAX_CONTROL_PAYLOAD) {
      throw new ProtocolError('ERR_FRAME_TOO_LARGE', `secure channel: ${FrameType[type]} frame of ${length} bytes (at most ${MAX_CONTROL_PAYLOAD})`);
    }
    if (length === 0) {
      if (type !== FrameType.Data) this.#finishControl(type, EMPTY);
      return;
    }
    this.#type = type;
    this.#remaining = length;
  }

  #finishControl(type: FrameType, payload: Buffer): void {
    this.#type = undefined;
    this.#control = [];
    this.#sink.control(type, payload);
  }
}
