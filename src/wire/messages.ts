import { ProtocolError } from '../errors.js';
import { RoutingId } from '../id/routing-id.js';

/** The hop protocol version this implementation speaks. Version 1 (unbound proofs, tokens in clear) is not spoken. */
export const PROTOCOL_VERSION = 2;
export const PREFACE_SIZE = 8;
export const HEADER_SIZE = 12;
export const DEFAULT_MAX_PAYLOAD = 1 << 20;
/** Longest reason message a sender puts in RegisterError, VcRejected, CloseVc or GoAway. */
export const MAX_REASON_MESSAGE = 1024;
export const PUBLIC_KEY_SIZE = 32;
export const NONCE_SIZE = 32;
export const EPHEMERAL_KEY_SIZE = 32;
/** Hello: static Ed25519 key | ephemeral X25519 key | nonce. */
export const HELLO_SIZE = PUBLIC_KEY_SIZE + EPHEMERAL_KEY_SIZE + NONCE_SIZE;
export const SIGNATURE_SIZE = 64;
/** A token on the wire is an HMAC-SHA256 bound to the connection, never the token itself. */
export const TOKEN_MAC_SIZE = 32;
/**
 * Largest payload accepted before the peer is authenticated: a Hello, a Proof, or a GoAway with
 * a full reason message. Anything larger is refused from the header.
 */
export const MAX_HANDSHAKE_PAYLOAD = 2 + 1024;
export const PING_SIZE = 8;
/** dst 16 | src 16 | srcPublicKey 32 | window 4, before the optional token MAC. */
export const OPEN_VC_FIXED_SIZE = 2 * RoutingId.SIZE + PUBLIC_KEY_SIZE + 4;
/** VcAccepted: window u32 | the acceptor's public key. */
export const VC_ACCEPTED_SIZE = 4 + PUBLIC_KEY_SIZE;

/** ASCII "RIDP". */
export const PREFACE_MAGIC = Buffer.from('RIDP', 'latin1');

export enum FrameType {
  Hello = 0x01,
  Proof = 0x02,
  Register = 0x10,
  RegisterOk = 0x11,
  RegisterError = 0x12,
  Unregister = 0x13,
  RegisterOptions = 0x14,
  OpenVc = 0x20,
  VcAccepted = 0x21,
  VcRejected = 0x22,
  Data = 0x23,
  Credit = 0x24,
  CloseVc = 0x25,
  CreditRevoke = 0x26,
  CreditReturn = 0x27,
  Ping = 0x30,
  Pong = 0x31,
  GoAway = 0x32,
  StatusRequest = 0x40,
  StatusResponse = 0x41,
}

export interface VersionRange {
  minVersion: number;
  maxVersion: number;
}

/** The highest version in both ranges. */
export function negotiateVersion(local: VersionRange, remote: VersionRange): number {
  const version = Math.min(local.maxVersion, remote.maxVersion);
  if (version < Math.max(local.minVersion, remote.minVersion)) {
    throw new ProtocolError(
      'ERR_UNSUPPORTED_VERSION',
      `unsupported protocol version: the peer speaks ${rangeText(remote)}, this side speaks ${rangeText(local)}`,
    );
  }
  return version;
}

function rangeText(r: VersionRange): string {
  return r.minVersion === r.maxVersion ? `version ${r.minVersion}` : `versions ${r.minVersion}-${r.maxVersion}`;
}

/** For arguments our own code passes: a wrong size is a bug here, not a peer's fault. */
export function expectSize(name: string, b: Buffer, size: number): void {
  if (!Buffer.isBuffer(b) || b.length !== size) {
    throw new RangeError(`${name} must be a ${size}-byte Buffer, got ${Buffer.isBuffer(b) ? `${b.length} bytes` : typeof b}`);
  }
}

/** `what` is a frame type, or a payload shape when the caller did not say which frame it came from. */
function malformed(what: FrameType | string, problem: string): ProtocolError {
  const label = typeof what === 'string' ? `${what} payload` : `${FrameType[what]} frame`;
  return new ProtocolError('ERR_PROTOCOL', `malformed ${label}: ${problem}`);
}

function exactLength(what: FrameType | string, buf: Buffer, size: number): void {
  if (buf.length !== size) throw malformed(what, `payload must be ${size} bytes, got ${buf.length}`);
}

function minLength(what: FrameType | string, buf: Buffer, size: number): void {
  if (buf.length < size) throw malformed(what, `payload must be at least ${size} bytes, got ${buf.length}`);
}

/**
 * A copy with memory of its own, for fields that outlive the frame (keys kept per registration
 * or VC): a view would pin the whole socket chunk it arrived in.
 */
function own(buf: Buffer, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafeSlow(end - start);
  buf.copy(out, 0, start, end);
  return out;
}

export interface Hello {
  /** The sender's static Ed25519 public key: its identity on this connection. */
  publicKey: Buffer;
  /** The sender's X25519 key for this connection only. */
  ephemeralKey: Buffer;
  nonce: Buffer;
  /** The whole payload, as the transcript hashes it. */
  bytes: Buffer;
}

export function decodeHello(buf: Buffer): Hello {
  exactLength(FrameType.Hello, buf, HELLO_SIZE);
  const bytes = own(buf, 0, HELLO_SIZE);
  const ephemeralAt = PUBLIC_KEY_SIZE;
  const nonceAt = ephemeralAt + EPHEMERAL_KEY_SIZE;
  return { publicKey: bytes.subarray(0, ephemeralAt), ephemeralKey: bytes.subarray(ephemeralAt, nonceAt), nonce: bytes.subarray(nonceAt), bytes };
}

/** The signature; a view into `buf`, as it is checked once and dropped. */
export function decodeProof(buf: Buffer): Buffer {
  exactLength(FrameType.Proof, buf, SIGNATURE_SIZE);
  return buf;
}

/** A token MAC (TOKEN_MAC_SIZE bytes) or none (empty); a view, checked once and dropped. */
function decodeTokenMac(what: FrameType, buf: Buffer): Buffer {
  if (buf.length !== 0 && buf.length !== TOKEN_MAC_SIZE) throw malformed(what, `a token MAC is ${TOKEN_MAC_SIZE} bytes, got ${buf.length}`);
  return buf;
}

/** The registration token's MAC, or an empty buffer for none. */
export function decodeRegister(buf: Buffer): Buffer {
  return decodeTokenMac(FrameType.Register, buf);
}

/** The status token's MAC, or an empty buffer for none. */
export function decodeStatusRequest(buf: Buffer): Buffer {
  return decodeTokenMac(FrameType.StatusRequest, buf);
}

export function decodeStatusResponse(buf: Buffer): unknown {
  return parseJson(FrameType.StatusResponse, buf);
}

/** Largest RegisterOptions payload: a few short fields, never a reason to buffer much. */
export const MAX_REGISTER_OPTIONS = 1024;

/**
 * A RegisterOptions or RegisterOk document (5.5): a JSON object. RegisterOk may be empty (an
 * empty object). Fields a receiver does not know are ignored; the caller checks the known ones.
 */
export function decodeRegistrationDocument(type: FrameType.RegisterOptions | FrameType.RegisterOk, buf: Buffer): Record<string, unknown> {
  if (buf.length === 0 && type === FrameType.RegisterOk) return {};
  const value = parseJson(type, buf);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed(type, 'payload is not a JSON object');
  return value as Record<string, unknown>;
}

function parseJson(type: FrameType, buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw malformed(type, `payload is not JSON (${(err as Error).message})`);
  }
}

/**
 * For RegisterError, VcRejected, CloseVc and GoAway; `type` only names the frame in errors.
 * Invalid UTF-8 in the message is replaced, not rejected: the message is for people.
 */
export function decodeReason(buf: Buffer, type?: FrameType): { reason: number; message: string } {
  minLength(type ?? 'reason', buf, 2);
  return { reason: buf.readUInt16BE(0), message: buf.toString('utf8', 2) };
}

export interface OpenVc {
  dst: RoutingId;
  src: RoutingId;
  srcPublicKey: Buffer;
  window: number;
  /** The dial token's MAC, or empty. A proxy checks it and never forwards it. */
  tokenMac: Buffer;
}

export function decodeOpenVc(buf: Buffer): OpenVc {
  minLength(FrameType.OpenVc, buf, OPEN_VC_FIXED_SIZE);
  const keyAt = 2 * RoutingId.SIZE;
  const windowAt = keyAt + PUBLIC_KEY_SIZE;
  return {
    dst: RoutingId.fromBytes(buf.subarray(0, RoutingId.SIZE)),
    src: RoutingId.fromBytes(buf.subarray(RoutingId.SIZE, keyAt)),
    srcPublicKey: own(buf, keyAt, windowAt),
    window: buf.readUInt32BE(windowAt),
    tokenMac: decodeTokenMac(FrameType.OpenVc, buf.subarray(OPEN_VC_FIXED_SIZE)),
  };
}

/**
 * A u32 window (VcAccepted) or credit grant (Credit). With `type` Credit a zero grant is an error
 * (FrameDecoder already rejects one), as it is meaningless and a cheap way to make a peer spin.
 */
export function decodeWindow(buf: Buffer, type?: FrameType.VcAccepted | FrameType.Credit): number {
  exactLength(type ?? 'window', buf, 4);
  const n = buf.readUInt32BE(0);
  if (n === 0 && type === FrameType.Credit) throw malformed(type, 'credit must be greater than 0');
  return n;
}

/** VcAccepted: the acceptor's initial credit and its public key (vouched for by the proxy, which checks it against the key the acceptor proved). */
export function decodeVcAccepted(buf: Buffer): { window: number; publicKey: Buffer } {
  exactLength(FrameType.VcAccepted, buf, VC_ACCEPTED_SIZE);
  return { window: buf.readUInt32BE(0), publicKey: own(buf, 4, VC_ACCEPTED_SIZE) };
}

export function decodeCredit(buf: Buffer): number {
  return decodeWindow(buf, FrameType.Credit);
}

/** CreditRevoke: how much unused credit the receiver asks back, greater than 0. */
export function decodeCreditRevoke(buf: Buffer): number {
  exactLength(FrameType.CreditRevoke, buf, 4);
  const n = buf.readUInt32BE(0);
  if (n === 0) throw malformed(FrameType.CreditRevoke, 'the amount must be greater than 0');
  return n;
}

/** CreditReturn: how much credit the sender gave back (0 when it had none left). */
export function decodeCreditReturn(buf: Buffer): number {
  exactLength(FrameType.CreditReturn, buf, 4);
  return buf.readUInt32BE(0);
}

/** The 8 opaque bytes of a Ping or Pong. */
export function decodePing(buf: Buffer, type?: FrameType.Ping | FrameType.Pong): Buffer {
  exactLength(type ?? 'ping', buf, PING_SIZE);
  return buf;
}
