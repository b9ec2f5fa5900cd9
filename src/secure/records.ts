import { createCipheriv, createDecipheriv, hkdfSync, type CipherChaCha20Poly1305Types, type CipherGCMTypes } from 'node:crypto';
import { IntegrityError, ProtocolError } from '../errors.js';
import { TAG_SIZE, totalLength } from './framing.js';

type RecordCipher = CipherGCMTypes | CipherChaCha20Poly1305Types;

interface Aead {
  cipher: RecordCipher;
  keyLength: number;
}

/** The records use the AEAD of the TLS 1.3 cipher suite the handshake negotiated. */
const AEAD_OF_SUITE: Record<string, Aead> = {
  TLS_CHACHA20_POLY1305_SHA256: { cipher: 'chacha20-poly1305', keyLength: 32 },
  TLS_AES_256_GCM_SHA384: { cipher: 'aes-256-gcm', keyLength: 32 },
  TLS_AES_128_GCM_SHA256: { cipher: 'aes-128-gcm', keyLength: 16 },
};

const NONCE_SIZE = 12;
const SECRET_SIZE = 32;
/** RFC 8446 section 7.5 exporter label (RFC 5705 reserves the EXPORTER prefix for such uses). */
export const EXPORTER_LABEL = 'EXPORTER-ridproxy-records-v1';
/** One secret for each direction: the dialer's sending secret, then the acceptor's. */
export const EXPORTER_LENGTH = 2 * SECRET_SIZE;
/**
 * Records sealed under one key before both ends move to the next: 2^20 records of at most
 * 64 KiB is 64 GiB, well inside AES-GCM's and ChaCha20-Poly1305's limits per key.
 */
export const RECORDS_PER_KEY = 2 ** 20;
const EMPTY = Buffer.alloc(0);

export function aeadForSuite(suite: string): Aead {
  const aead = AEAD_OF_SUITE[suite];
  if (aead === undefined) throw new ProtocolError('ERR_PROTOCOL', `secure channel: the handshake negotiated ${suite}, which has no record protection here`);
  return aead;
}

function expand(secret: Buffer, label: string, length: number): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, EMPTY, `ridproxy ${label}`, length));
}

/**
 * The key schedule of one direction: key and IV derived from a secret, a record counter mixed
 * into the IV as in TLS 1.3, and a new secret (so a new key) every `recordsPerKey` records.
 * Both ends count the same records, so they move to the next key at the same one.
 */
class TrafficKeys {
  readonly #aead: Aead;
  readonly #recordsPerKey: number;
  #secret: Buffer;
  #key!: Buffer;
  #iv!: Buffer;
  #sequence = 0;

  constructor(aead: Aead, secret: Buffer, recordsPerKey: number) {
    this.#aead = aead;
    this.#recordsPerKey = recordsPerKey;
    this.#secret = secret;
    this.#derive();
  }

  get cipher(): RecordCipher {
    return this.#aead.cipher;
  }

  get key(): Buffer {
    return this.#key;
  }

  /** The nonce of the next record; moves on to the next key after the last record under this one. */
  nextNonce(): Buffer {
    const nonce = Buffer.from(this.#iv);
    let sequence = this.#sequence;
    for (let i = NONCE_SIZE - 1; sequence > 0; i--) {
      nonce[i] ^= sequence & 0xff;
      sequence = Math.floor(sequence / 256);
    }
    if (++this.#sequence === this.#recordsPerKey) {
      this.#secret = expand(this.#secret, 'key update', SECRET_SIZE);
      this.#derive();
    }
    return nonce;
  }

  #derive(): void {
    this.#key = expand(this.#secret, 'key', this.#aead.keyLength);
    this.#iv = expand(this.#secret, 'iv', NONCE_SIZE);
    this.#sequence = 0;
  }
}

/** Splits the secrets exported from the handshake into [dialer's sending secret, acceptor's]. */
export function directionSecrets(exported: Buffer): [Buffer, Buffer] {
  return [exported.subarray(0, SECRET_SIZE), exported.subarray(SECRET_SIZE, 2 * SECRET_SIZE)];
}

/** Seals this side's records. */
export class RecordSealer {
  readonly #keys: TrafficKeys;

  constructor(aead: Aead, secret: Buffer, recordsPerKey = RECORDS_PER_KEY) {
    this.#keys = new TrafficKeys(aead, secret, recordsPerKey);
  }

  /** The record's body for `plaintext` (in parts) under `header`: ciphertext parts, then the tag. */
  seal(header: Buffer, plaintext: readonly Buffer[]): Buffer[] {
    const { cipher: name, key } = this.#keys;
    const nonce = this.#keys.nextNonce();
    // One call per kind of AEAD: node:crypto types each by its own overload.
    const cipher = name === 'chacha20-poly1305' ? createCipheriv(name, key, nonce, { authTagLength: TAG_SIZE }) : createCipheriv(name, key, nonce, { authTagLength: TAG_SIZE });
    cipher.setAAD(header, { plaintextLength: totalLength(plaintext) });
    const body = plaintext.map((part) => cipher.update(part));
    cipher.final();
    body.push(cipher.getAuthTag());
    return body;
  }
}

/** Opens the peer's records, in the order it sealed them. */
export class RecordOpener {
  readonly #keys: TrafficKeys;

  constructor(aead: Aead, secret: Buffer, recordsPerKey = RECORDS_PER_KEY) {
    this.#keys = new TrafficKeys(aead, secret, recordsPerKey);
  }

  /**
   * The plaintext, in parts, of the record with `header` and `body` (ciphertext then tag, in any
   * split). Throws IntegrityError unless it is the peer's next record, unaltered;
   * nothing of a record is returned before its tag has been checked.
   */
  open(header: Buffer, body: readonly Buffer[]): Buffer[] {
    const { ciphertext, tag } = splitTag(body);
    // The key before the nonce: taking the last nonce under a key moves the schedule on.
    const { cipher: name, key } = this.#keys;
    const nonce = this.#keys.nextNonce();
    const decipher = name === 'chacha20-poly1305' ? createDecipheriv(name, key, nonce, { authTagLength: TAG_SIZE }) : createDecipheriv(name, key, nonce, { authTagLength: TAG_SIZE });
    decipher.setAAD(header, { plaintextLength: totalLength(ciphertext) });
    decipher.setAuthTag(tag);
    const plaintext = ciphertext.map((part) => decipher.update(part));
    try {
      decipher.final();
    } catch (err) {
      throw new IntegrityError('record failed authentication', { cause: err });
    }
    return plaintext;
  }
}

/** The tag is the body's last 16 bytes, wherever the parts happen to split. */
function splitTag(body: readonly Buffer[]): { ciphertext: Buffer[]; tag: Buffer } {
  const ciphertext = body.slice();
  const tagParts: Buffer[] = [];
  let needed = TAG_SIZE;
  while (needed > 0) {
    const last = ciphertext.pop()!;
    if (last.length > needed) {
      ciphertext.push(last.subarray(0, last.length - needed));
      tagParts.unshift(last.subarray(last.length - needed));
      needed = 0;
    } else {
      tagParts.unshift(last);
      needed -= last.length;
    }
  }
  return { ciphertext, tag: tagParts.length === 1 ? tagParts[0] : Buffer.concat(tagParts) };
}
