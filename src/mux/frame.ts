/**
 * yamux frame header codec and protocol constants (hashicorp yamux spec.md).
 *
 * Every frame starts with a 12-byte big-endian header: version u8, type u8, flags u16,
 * stream id u32, length u32. Only Data frames carry a body; for WindowUpdate the length is a
 * window delta, for Ping an opaque value echoed back, for GoAway an error code.
 */

export const PROTOCOL_VERSION = 0;
export const HEADER_LENGTH = 12;

/** The window each side of a new stream starts with before any update (spec-fixed). */
export const INITIAL_STREAM_WINDOW = 256 * 1024;

/** Largest value a u32 length field can carry (window deltas, frame lengths). */
export const MAX_U32 = 0xffff_ffff;

export enum FrameType {
  Data = 0,
  WindowUpdate = 1,
  Ping = 2,
  GoAway = 3,
}

/** Flag bits; several may be set on one frame, so they are always bit-tested. */
export const Flag = {
  SYN: 0x1,
  ACK: 0x2,
  FIN: 0x4,
  RST: 0x8,
} as const;

export enum GoAwayCode {
  Normal = 0,
  ProtocolError = 1,
  InternalError = 2,
}

export interface FrameHeader {
  version: number;
  type: number;
  flags: number;
  streamId: number;
  length: number;
}

export function encodeHeader(type: FrameType, flags: number, streamId: number, length: number): Buffer {
  // allocUnsafe draws from Node's shared pool, so a header costs no syscall-sized allocation.
  const header = Buffer.allocUnsafe(HEADER_LENGTH);
  header[0] = PROTOCOL_VERSION;
  header[1] = type;
  header.writeUInt16BE(flags, 2);
  header.writeUInt32BE(streamId, 4);
  header.writeUInt32BE(length, 8);
  return header;
}

/** Reads the 12 header bytes at `offset`; the caller guarantees they are all present. */
export function decodeHeader(buf: Buffer, offset: number): FrameHeader {
  return {
    version: buf[offset],
    type: buf[offset + 1],
    flags: buf.readUInt16BE(offset + 2),
    streamId: buf.readUInt32BE(offset + 4),
    length: buf.readUInt32BE(offset + 8),
  };
}

export function isKnownFrameType(type: number): type is FrameType {
  return type >= FrameType.Data && type <= FrameType.GoAway;
}
