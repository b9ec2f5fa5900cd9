import { createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import { AuthenticationError } from '../errors.js';
import { Identity } from '../id/identity.js';
import { EPHEMERAL_KEY_SIZE, HELLO_SIZE, TOKEN_MAC_SIZE, expectSize, type Hello } from '../wire/messages.js';

// The cryptography of the hop handshake (docs/protocol.md section 5.1): an ephemeral X25519
// exchange authenticated by each side's Ed25519 signature over the whole transcript, and the
// token MACs keyed from it. Kept apart from the state machine in connection.ts so that the
// known-answer vectors in the tests exercise exactly what the wire uses.

const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const TRANSCRIPT_CONTEXT = Buffer.from('ridproxy/2 hop handshake', 'latin1');
const PROOF_CONTEXT = { initiator: Buffer.from('ridproxy/2 hop proof by initiator', 'latin1'), responder: Buffer.from('ridproxy/2 hop proof by responder', 'latin1') };
const TOKEN_KEY_INFO = Buffer.from('ridproxy/2 token key', 'latin1');

export type HopRole = 'initiator' | 'responder';

/** What a token proves the right to do; each has its own label so a MAC for one is useless for another. */
export enum TokenPurpose {
  Register = 'register',
  Dial = 'dial',
  Status = 'status',
}

export interface EphemeralKey {
  privateKey: KeyObject;
  /** Raw 32-byte X25519 public key, as sent in Hello. */
  publicKey: Buffer;
}

/**
 * A fresh X25519 key pair. The public key comes out of the key generation already encoded (JWK,
 * as fast as generating the pair alone), never from `publicKey.export({ format: 'jwk' })`
 * afterwards: Node 20 (20.20.2 here) exports an OKP key as JWK holding the key's mutex while it
 * allocates strings, and when that allocation runs a GC which frees the finished key generation
 * job (unreachable once generateKeyPairSync returns), the job's destructor takes the same mutex
 * and the thread deadlocks for good. A proxy hit it a few times per 100,000 handshakes (5,000
 * servers reconnecting at once, bench/RESULTS.md "Reconnect storm"). Encoded inside the job, the
 * key is exported while its job is still running, so no destructor can want that mutex.
 */
export function generateEphemeral(): EphemeralKey {
  // @types/node has no overload for an encoded public key beside a KeyObject private key, which Node returns.
  const { privateKey, publicKey } = generateKeyPairSync('x25519', { publicKeyEncoding: { format: 'jwk' } }) as unknown as {
    privateKey: KeyObject;
    publicKey: { x?: string };
  };
  const raw = Buffer.from(publicKey.x ?? '', 'base64url');
  if (raw.length !== EPHEMERAL_KEY_SIZE) throw new Error(`unexpected X25519 public key encoding ${JSON.stringify(publicKey)}`);
  return { privateKey, publicKey: raw };
}

// Peer keys cross node:crypto as JWK: importing one is several times faster than the equivalent
// DER. (Exporting is safe here only for keys not made by generateKeyPairSync: see above.)
function rawPublicKey(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');
}

function publicKeyFromRaw(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
}

/** For known-answer tests: the ephemeral key of a fixed 32-byte X25519 private scalar. */
export function ephemeralFromPrivate(raw: Buffer): EphemeralKey {
  expectSize('X25519 private key', raw, EPHEMERAL_KEY_SIZE);
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
  return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)) };
}

/**
 * SHA-256 over both Hellos, the initiator's first. Each Hello carries its sender's static key,
 * ephemeral key and nonce, so a signature over this hash binds both identities (the verifier's
 * among them), both nonces and the key exchange.
 */
export function transcriptHash(initiatorHello: Buffer, responderHello: Buffer): Buffer {
  expectSize('initiator Hello', initiatorHello, HELLO_SIZE);
  expectSize('responder Hello', responderHello, HELLO_SIZE);
  return createHash('sha256').update(TRANSCRIPT_CONTEXT).update(initiatorHello).update(responderHello).digest();
}

/** The bytes a side signs: its role's label, then the transcript hash. */
export function proofMessage(role: HopRole, transcript: Buffer): Buffer {
  return Buffer.concat([PROOF_CONTEXT[role], transcript]);
}

export function signProof(identity: Identity, role: HopRole, transcript: Buffer): Buffer {
  return identity.sign(proofMessage(role, transcript));
}

export function verifyProof(peer: Hello, role: HopRole, transcript: Buffer, signature: Buffer): boolean {
  return Identity.verify(peer.publicKey, proofMessage(role, transcript), signature);
}

/**
 * The key that token MACs on this connection use: HKDF-SHA256 of the X25519 shared secret,
 * salted with the transcript hash. Only the two ends of this connection can compute it.
 */
export function deriveTokenKey(own: EphemeralKey, peerEphemeral: Buffer, transcript: Buffer): Buffer {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: own.privateKey, publicKey: publicKeyFromRaw(peerEphemeral) });
  } catch (err) {
    throw new AuthenticationError(`the peer's ephemeral key is unusable (${(err as Error).message})`);
  }
  // A small-order point gives an all-zero secret that anyone can compute; OpenSSL may not refuse it.
  if (shared.every((byte) => byte === 0)) throw new AuthenticationError("the peer's ephemeral key is a small-order point");
  return Buffer.from(hkdfSync('sha256', shared, transcript, TOKEN_KEY_INFO, 32));
}

/**
 * What goes on the wire instead of a token: HMAC-SHA256(tokenKey, purpose | vci | token). It is
 * bound to this connection (tokenKey), to what it authorizes and, for a dial, to the VC, so an
 * observer can neither read the token nor replay the MAC anywhere else.
 */
export function tokenMac(tokenKey: Buffer, purpose: TokenPurpose, vci: number, token: string): Buffer {
  const vciBytes = Buffer.allocUnsafe(4);
  vciBytes.writeUInt32BE(vci, 0);
  return createHmac('sha256', tokenKey).update(purpose, 'latin1').update(vciBytes).update(token, 'utf8').digest();
}

/** Constant time in the token's content and length: the expected MAC is always computed, and MACs have a fixed size. */
export function tokenMacMatches(tokenKey: Buffer, purpose: TokenPurpose, vci: number, token: string, presented: Buffer): boolean {
  const expected = tokenMac(tokenKey, purpose, vci, token);
  return presented.length === TOKEN_MAC_SIZE && timingSafeEqual(presented, expected);
}
