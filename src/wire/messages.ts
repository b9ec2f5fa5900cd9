import { ProtocolError } from '../errors.js';
import { RoutingId } from '../id/routing-id.js';

/** The hop protocol version this implementation speaks (the only one so far). */
export const PROTOCOL_VERSION = 1;
export const PREFACE_SIZE = 8;
export const HEADER_SIZE = 12;
export const DEFAULT_MAX_PAYLOAD = 1 << 20;
/** Longest reason message a sender puts in RegisterError, VcRejected, CloseVc or GoAway. */
export const MAX_REASON_MESSAGE = 1024;
export const PUBLIC_KEY_SIZE = 32;
export const NONCE_SIZE = 32;
export const SIGNATURE_SIZE = 64;
export const PING_SIZE = 8;
/** dst 16 | src 16 | srcPublicKey 32 | window 4, before the optional token. */
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
  OpenVc = 0x20,
  VcAccepted = 0x21,
  VcRejected = 0x22,
  Data = 0x23,
  Credit = 0x24,
  CloseVc = 0x25,
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
      `no common protocol version: the peer speaks ${rangeText(remote)}, this side speaks ${rangeText(local)}`,
    );
  }
  return version;
}

function rangeText(r: VersionRange): string {
  return r.minVersion === r.maxVersion ? `version ${r.minVersion}` : `versions ${r.minVersion}-${r.maxVersion}`;
}

const PROOF_CONTEXT = Buffer.from('ridproxy/1 hop proof', 'latin1');

/**
 * The bytes a process signs to prove its key on a hop: the context string, the challenge the
 * peer sent, its own nonce and its own public key.
 */
export function proofTranscript(peerNonce: Buffer, ownNonce: Buffer, ownPublicKey: Buffer): Buffer {
  expectSize('peerNonce', peerNonce, NONCE_SIZE);
  expectSize('ownNonce', ownNonce, NONCE_SIZE);
  expectSize('ownPublicKey', ownPublicKey, PUBLIC_KEY_SIZE);
  return Buffer.concat([PROOF_CONTEXT, peerNonce, ownNonce, ownPublicKey], PROOF_CONTEXT.length + 2 * NONCE_SIZE + PUBLIC_KEY_SIZE);
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

export function decodeHello(buf: Buffer): { publicKey: Buffer; nonce: Buffer } {
  exactLength(FrameType.Hello, buf, PUBLIC_KEY_SIZE + NONCE_SIZE);
  return { publicKey: own(buf, 0, PUBLIC_KEY_SIZE), nonce: own(buf, PUBLIC_KEY_SIZE, PUBLIC_KEY_SIZE + NONCE_SIZE) };
}

/** The signature; a view into `buf`, as it is checked once and dropped. */
export function decodeProof(buf: Buffer): Buffer {
  exactLength(FrameType.Proof, buf, SIGNATURE_SIZE);
  return buf;
}

/** The registration token (possibly empty), copied. */
export function decodeRegister(buf: Buffer): Buffer {
  return own(buf, 0, buf.length);
}

/** The status token (possibly empty), copied. */
export function decodeStatusRequest(buf: Buffer): Buffer {
  return own(buf, 0, buf.length);
}

export function decodeStatusResponse(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw malformed(FrameType.StatusResponse, `payload is not JSON (${(err as Error).message})`);
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
  token: Buffer;
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
    token: own(buf, OPEN_VC_FIXED_SIZE, buf.length),
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

/** The 8 opaque bytes of a Ping or Pong. */
export function decodePing(buf: Buffer, type?: FrameType.Ping | FrameType.Pong): Buffer {
  exactLength(type ?? 'ping', buf, PING_SIZE);
  return buf;
}
