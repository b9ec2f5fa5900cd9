import type { RoutingId } from '../id/routing-id.js';
import {
  EPHEMERAL_KEY_SIZE,
  FrameType,
  HEADER_SIZE,
  HELLO_SIZE,
  MAX_REASON_MESSAGE,
  NONCE_SIZE,
  OPEN_VC_FIXED_SIZE,
  PING_SIZE,
  PREFACE_MAGIC,
  PREFACE_SIZE,
  PROTOCOL_VERSION,
  PUBLIC_KEY_SIZE,
  VC_ACCEPTED_SIZE,
  SIGNATURE_SIZE,
  TOKEN_MAC_SIZE,
  expectSize,
} from './messages.js';
import { headerProblem } from './rules.js';

// Encoders check their arguments and throw RangeError: a bad argument is a bug in our own code,
// and catching it here beats the peer tearing the connection down with a GoAway.

function checkUint(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${name} must be an integer in 0-${max}, got ${value}`);
  }
}

export function encodePreface(minVersion = PROTOCOL_VERSION, maxVersion = PROTOCOL_VERSION): Buffer {
  checkUint('minVersion', minVersion, 0xffff);
  checkUint('maxVersion', maxVersion, 0xffff);
  if (minVersion < 1 || minVersion > maxVersion) throw new RangeError(`invalid version range ${minVersion}-${maxVersion}`);
  const b = Buffer.allocUnsafe(PREFACE_SIZE);
  PREFACE_MAGIC.copy(b, 0);
  b.writeUInt16BE(minVersion, 4);
  b.writeUInt16BE(maxVersion, 6);
  return b;
}

/** The 12-byte header alone; the payload is written after it (e.g. with writev), never copied in. */
export function encodeHeader(type: FrameType, vci: number, length: number, flags = 0): Buffer {
  checkUint('vci', vci, 0xffffffff);
  checkUint('length', length, 0xffffffff);
  checkUint('flags', flags, 0xff);
  // Flags are range-checked only, so tests and future versions can still build flagged headers.
  const problem = headerProblem(type, 0, 0, vci, length);
  if (problem !== undefined) throw new RangeError(`cannot encode frame: ${problem}`);
  const b = Buffer.allocUnsafe(HEADER_SIZE);
  b[0] = type;
  b[1] = flags;
  b[2] = 0;
  b[3] = 0;
  b.writeUInt32BE(vci, 4);
  b.writeUInt32BE(length, 8);
  return b;
}

/** [header, ...payload parts], ready for writev; the payload buffers are passed through as they are. */
export function encodeFrame(type: FrameType, vci: number, payload: Buffer | readonly Buffer[] = []): Buffer[] {
  if (Buffer.isBuffer(payload)) {
    const header = encodeHeader(type, vci, payload.length);
    return payload.length === 0 ? [header] : [header, payload];
  }
  let length = 0;
  for (const part of payload) length += part.length;
  return [encodeHeader(type, vci, length), ...payload];
}

export function encodeHello(publicKey: Buffer, ephemeralKey: Buffer, nonce: Buffer): Buffer {
  expectSize('publicKey', publicKey, PUBLIC_KEY_SIZE);
  expectSize('ephemeralKey', ephemeralKey, EPHEMERAL_KEY_SIZE);
  expectSize('nonce', nonce, NONCE_SIZE);
  return Buffer.concat([publicKey, ephemeralKey, nonce], HELLO_SIZE);
}

/** The Proof payload is the signature itself; this only checks its size. */
export function encodeProof(signature: Buffer): Buffer {
  expectSize('signature', signature, SIGNATURE_SIZE);
  return signature;
}

/** A token MAC (hop/handshake.ts tokenMac), or nothing when no token is presented. */
function tokenMacBytes(mac: Buffer | undefined): Buffer {
  if (mac === undefined) return Buffer.alloc(0);
  expectSize('token MAC', mac, TOKEN_MAC_SIZE);
  return mac;
}

export function encodeRegister(tokenMac?: Buffer): Buffer {
  return tokenMacBytes(tokenMac);
}

export function encodeStatusRequest(tokenMac?: Buffer): Buffer {
  return tokenMacBytes(tokenMac);
}

/** A StatusResponse, RegisterOptions or RegisterOk payload: UTF-8 JSON. */
export function encodeDocument(document: unknown): Buffer {
  return Buffer.from(JSON.stringify(document), 'utf8');
}

/**
 * RegisterError, VcRejected, CloseVc and GoAway payload. Messages longer than MAX_REASON_MESSAGE
 * bytes are cut at a character boundary rather than rejected: an error path must not fail.
 */
export function encodeReason(reason: number, message = ''): Buffer {
  checkUint('reason', reason, 0xffff);
  let text = Buffer.from(message, 'utf8');
  if (text.length > MAX_REASON_MESSAGE) {
    let end = MAX_REASON_MESSAGE;
    // Back up over UTF-8 continuation bytes (10xxxxxx) so no character is split.
    while (end > 0 && (text[end] & 0xc0) === 0x80) end--;
    text = text.subarray(0, end);
  }
  const b = Buffer.allocUnsafe(2 + text.length);
  b.writeUInt16BE(reason, 0);
  text.copy(b, 2);
  return b;
}

export function encodeOpenVc(open: { dst: RoutingId; src: RoutingId; srcPublicKey: Buffer; window: number; tokenMac?: Buffer }): Buffer {
  expectSize('srcPublicKey', open.srcPublicKey, PUBLIC_KEY_SIZE);
  checkUint('window', open.window, 0xffffffff);
  const mac = tokenMacBytes(open.tokenMac);
  const b = Buffer.allocUnsafe(OPEN_VC_FIXED_SIZE + mac.length);
  open.dst.bytes.copy(b, 0);
  open.src.bytes.copy(b, 16);
  open.srcPublicKey.copy(b, 32);
  b.writeUInt32BE(open.window, 64);
  mac.copy(b, OPEN_VC_FIXED_SIZE);
  return b;
}

/** VcAccepted payload: the initial credit the acceptor grants, then the acceptor's public key. */
export function encodeVcAccepted(window: number, publicKey: Buffer): Buffer {
  expectSize('publicKey', publicKey, PUBLIC_KEY_SIZE);
  const b = Buffer.allocUnsafe(VC_ACCEPTED_SIZE);
  encodeWindow(window).copy(b, 0);
  publicKey.copy(b, 4);
  return b;
}

/** A u32 window or credit amount. */
export function encodeWindow(window: number): Buffer {
  checkUint('window', window, 0xffffffff);
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(window, 0);
  return b;
}

export function encodeCredit(amount: number): Buffer {
  if (amount === 0) throw new RangeError('a Credit grant must be greater than 0');
  return encodeWindow(amount);
}

/** Ping/Pong payload: 8 opaque bytes (a Pong echoes the Ping's). */
export function encodePing(data: Buffer): Buffer {
  expectSize('ping data', data, PING_SIZE);
  return data;
}
