import { ProtocolError } from '../errors.js';

/**
 * What a secure channel puts on its transport: segments of a 4-byte header, type (u8) then body
 * length (u24, big-endian), and the body. Handshake segments carry the TLS 1.3 handshake; every
 * other type is a record sealed with keys exported from that handshake, its body the AEAD
 * ciphertext followed by the 16-byte tag, and its header the associated data. TLS authenticates
 * the peers and agrees the keys; the records move the bytes, because sealing them here costs a
 * fraction of running them through node:tls over a stream that is not a socket.
 */
export enum SegmentType {
  /** TLS handshake bytes, as TLS wrote them. */
  Handshake = 0,
  Data = 1,
  /** This side authenticated and authorized the peer. Empty. */
  Accept = 2,
  /** This side's authorize check refused the peer; the plaintext is a reason for people. */
  Unauthorized = 3,
  /** The peer's key is not the one this side expected (it dialed another routing ID). */
  Unauthenticated = 4,
  /** Clean end of this direction: nothing follows. Empty. */
  End = 5,
}

export const HEADER_SIZE = 4;
export const TAG_SIZE = 16;
/**
 * Largest Data plaintext in one record. A receiver holds a whole record before it may release any
 * of it, so this bounds its buffering; it is four multiplexer frames, so that one flush of them
 * is one record and the cost of an AEAD call is spread over many bytes.
 */
export const MAX_DATA_PLAINTEXT = 256 * 1024;
/** Refusal reasons are short; a larger one is refused from its header, before it is buffered. */
export const MAX_REASON_PLAINTEXT = 1024;
/** Handshake bytes are passed on as they arrive; writers keep each segment to this. */
export const MAX_HANDSHAKE_SEGMENT = 0xffffff;

/** Largest body each sealed type may declare: its plaintext limit plus the tag. */
const MAX_SEALED_BODY: Record<Exclude<SegmentType, SegmentType.Handshake>, number> = {
  [SegmentType.Data]: MAX_DATA_PLAINTEXT + TAG_SIZE,
  [SegmentType.Accept]: TAG_SIZE,
  [SegmentType.Unauthorized]: MAX_REASON_PLAINTEXT + TAG_SIZE,
  [SegmentType.Unauthenticated]: MAX_REASON_PLAINTEXT + TAG_SIZE,
  [SegmentType.End]: TAG_SIZE,
};

export function segmentHeader(type: SegmentType, bodyLength: number): Buffer {
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt32BE(bodyLength, 0);
  header[0] = type;
  return header;
}

export function totalLength(parts: readonly Buffer[]): number {
  let length = 0;
  for (const part of parts) length += part.length;
  return length;
}

export interface SegmentSink {
  /** Part of a Handshake segment's body, passed on as it arrives rather than once it is whole. */
  handshake(bytes: Buffer): void;
  /** A whole sealed segment: its header (the AEAD's associated data) and its body, in parts. */
  sealed(type: SegmentType, header: Buffer, body: Buffer[]): void;
}

/**
 * Incremental segment decoder: any split of the byte stream into chunks gives the same calls.
 * Bodies are passed on as views of the input chunks, so it copies only headers.
 */
export class SegmentReader {
  readonly #sink: SegmentSink;
  #header = Buffer.alloc(HEADER_SIZE);
  #headerFill = 0;
  /** The segment whose body is being read, or undefined between segments. */
  #type: SegmentType | undefined;
  #remaining = 0;
  #body: Buffer[] = [];

  constructor(sink: SegmentSink) {
    this.#sink = sink;
  }

  /** Throws ProtocolError for an unknown type or a body longer than its type allows. */
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
        this.#start(this.#header[0], this.#header.readUIntBE(1, 3));
        continue;
      }
      const n = Math.min(this.#remaining, chunk.length - offset);
      const part = chunk.subarray(offset, offset + n);
      offset += n;
      this.#remaining -= n;
      if (this.#type === SegmentType.Handshake) {
        if (this.#remaining === 0) this.#type = undefined;
        this.#sink.handshake(part);
      } else {
        this.#body.push(part);
        if (this.#remaining === 0) this.#finishSealed(this.#type);
      }
    }
  }

  #start(type: number, length: number): void {
    if (SegmentType[type] === undefined) throw new ProtocolError('ERR_PROTOCOL', `secure channel: the peer does not speak this protocol (segment type ${type} is unknown)`);
    if (type === SegmentType.Handshake) {
      if (length > 0) {
        this.#type = type;
        this.#remaining = length;
      }
      return;
    }
    const max = MAX_SEALED_BODY[type as Exclude<SegmentType, SegmentType.Handshake>];
    if (length < TAG_SIZE || length > max) {
      throw new ProtocolError(length > max ? 'ERR_FRAME_TOO_LARGE' : 'ERR_PROTOCOL', `secure channel: ${SegmentType[type]} record with a ${length}-byte body (${TAG_SIZE} to ${max} allowed)`);
    }
    this.#type = type;
    this.#remaining = length;
  }

  #finishSealed(type: SegmentType): void {
    const header = this.#header;
    const body = this.#body;
    // The sink may keep both: the next segment gets its own.
    this.#header = Buffer.allocUnsafe(HEADER_SIZE);
    this.#body = [];
    this.#type = undefined;
    this.#sink.sealed(type, header, body);
  }
}
