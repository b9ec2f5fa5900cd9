import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { RoutingId } from './routing-id.js';

/** DER SubjectPublicKeyInfo header for Ed25519 (RFC 8410); the raw 32-byte key follows it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PUBLIC_KEY_SIZE = 32;
const SIGNATURE_SIZE = 64;

/** The JSON form of an identity file. */
export interface IdentityJson {
  type: 'ridproxy-identity';
  version: 1;
  /** base64 of the PKCS8 DER private key */
  privateKey: string;
  /** hex of the raw 32-byte public key */
  publicKey: string;
  routingId: string;
}

/**
 * Encodings of the Ed25519 points of small order (orders 1, 2, 4, 8, including the non-canonical
 * encodings of 0, 1 and -1), as listed by libsodium. OpenSSL accepts them as public keys, and with
 * them a "signature" can be forged without any private key (an all-zero key and signature verify
 * for one message in four), so a peer presenting one has proved nothing. Compared with the sign
 * bit of the last byte masked off, because it only selects between x and -x.
 */
const SMALL_ORDER_KEYS = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((hex) => Buffer.from(hex, 'hex'));

/** True for the Ed25519 public keys of small order, for which signatures can be forged without a private key. */
export function isSmallOrderKey(raw32: Buffer): boolean {
  return SMALL_ORDER_KEYS.some((k) => k.compare(raw32, 0, 31, 0, 31) === 0 && k[31] === (raw32[31] & 0x7f));
}

/** A KeyObject for a raw 32-byte Ed25519 public key, as carried in Hello and OpenVc frames. */
export function publicKeyFromRaw(raw32: Buffer): KeyObject {
  if (!Buffer.isBuffer(raw32) || raw32.length !== PUBLIC_KEY_SIZE) {
    const got = Buffer.isBuffer(raw32) ? `${raw32.length} bytes` : typeof raw32;
    throw new InvalidArgumentError('ERR_INVALID_IDENTITY', `an Ed25519 public key is ${PUBLIC_KEY_SIZE} raw bytes, got ${got}`);
  }
  // A JWK imports about ten times faster than the equivalent SPKI DER, and every handshake does this.
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw32.toString('base64url') }, format: 'jwk' });
}

/** An Ed25519 key pair; its routing id is derived from the public key. */
export class Identity {
  readonly publicKey: Buffer;
  readonly routingId: RoutingId;
  readonly #privateKey: KeyObject;

  private constructor(privateKey: KeyObject) {
    this.#privateKey = privateKey;
    const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
    this.publicKey = Buffer.from(spki.subarray(ED25519_SPKI_PREFIX.length));
    this.routingId = RoutingId.fromPublicKey(this.publicKey);
  }

  static generate(): Identity {
    return new Identity(generateKeyPairSync('ed25519').privateKey);
  }

  static fromPrivateKey(k: KeyObject): Identity {
    const problem = keyProblem(k);
    if (problem !== undefined) throw new InvalidArgumentError('ERR_INVALID_IDENTITY', `invalid identity key: ${problem}`);
    return new Identity(k);
  }

  sign(data: Buffer): Buffer {
    return sign(null, data, this.#privateKey);
  }

  /**
   * False (never an exception) for any malformed key, signature or argument, since peers send
   * garbage; also false for small-order public keys, which no private key stands behind.
   */
  static verify(publicKeyRaw: Buffer, data: Buffer, signature: Buffer): boolean {
    if (!Buffer.isBuffer(publicKeyRaw) || publicKeyRaw.length !== PUBLIC_KEY_SIZE || isSmallOrderKey(publicKeyRaw)) return false;
    if (!Buffer.isBuffer(signature) || signature.length !== SIGNATURE_SIZE) return false;
    if (!Buffer.isBuffer(data)) return false;
    try {
      return verify(null, data, publicKeyFromRaw(publicKeyRaw), signature);
    } catch {
      return false;
    }
  }

  toPem(): string {
    return this.#privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  }

  /** Contains the private key: never hand an Identity to a logger or status document. */
  toJSON(): IdentityJson {
    return {
      type: 'ridproxy-identity',
      version: 1,
      privateKey: this.#privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
      publicKey: this.publicKey.toString('hex'),
      routingId: this.routingId.toString(),
    };
  }
}

function keyProblem(k: KeyObject): string | undefined {
  if (k?.type !== 'private') return `expected a private key, got ${k?.type === 'public' ? 'a public key' : 'no key'}`;
  if (k.asymmetricKeyType !== 'ed25519') return `not an Ed25519 private key (found ${k.asymmetricKeyType ?? 'unknown type'})`;
  return undefined;
}

function invalid(file: string, problem: string, cause?: unknown): InvalidArgumentError {
  return new InvalidArgumentError('ERR_INVALID_IDENTITY', `identity file ${file}: ${problem}`, cause === undefined ? undefined : { cause });
}

function fsProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EISDIR':
      return 'is a directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOTDIR':
      return 'a parent path is not a directory';
    default:
      return `cannot access (${(err as Error).message})`;
  }
}

/**
 * Writes the identity as a PKCS8 PEM file, or as JSON when `file` ends with `.json`, readable only
 * by its owner. Refuses to replace an existing file unless `force`, so a typo cannot silently
 * destroy the key behind a published endpoint.
 */
export async function saveIdentity(identity: Identity, file: string, options: { force?: boolean } = {}): Promise<void> {
  const text = file.toLowerCase().endsWith('.json') ? `${JSON.stringify(identity.toJSON(), null, 2)}\n` : identity.toPem();
  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw invalid(file, `cannot create its directory: ${fsProblem(err)}`, err);
  }
  // With force, write a fresh 0600 file and rename it over the old one: opening the old file for
  // writing would keep its (possibly wider) mode, and a crash mid-write would lose both keys.
  const target = options.force ? join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`) : file;
  let handle;
  try {
    handle = await open(target, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST' && !options.force) {
      throw new InvalidArgumentError('ERR_IDENTITY_EXISTS', `identity file ${file} already exists; use --force to replace it`, { cause: err });
    }
    throw invalid(file, `cannot write: ${fsProblem(err)}`, err);
  }
  try {
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (target !== file) await rename(target, file);
  } catch (err) {
    await unlink(target).catch(() => undefined);
    throw invalid(file, `cannot write: ${fsProblem(err)}`, err);
  }
}

/**
 * Reads an identity file in either form written by saveIdentity (PEM, or JSON). Like ssh with its
 * keys, it refuses a file that group or others may access: the key behind a routing id is the
 * only proof of it, and a file others could read may already be a copy.
 */
export async function loadIdentity(file: string): Promise<Identity> {
  let text: string;
  let mode: number;
  try {
    const handle = await open(file, 'r');
    try {
      // The mode of the file whose bytes are used, not of whatever the path names a moment later.
      mode = (await handle.stat()).mode;
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw invalid(file, fsProblem(err), err);
  }
  const trimmed = text.trim();
  const identity = trimmed.startsWith('{') ? identityFromJson(file, trimmed) : identityFromPem(file, trimmed);
  // Checked once the file is known to hold a key, so a file of something else is named for what it is.
  // Windows has no group/other bits: every file reports 0666 there, so the check would refuse them all.
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new InvalidArgumentError(
      'ERR_INVALID_IDENTITY',
      `Permissions ${octal} for '${file}' are too open: a private key must not be accessible by group or others, so this one is refused; chmod 600 '${file}'`,
    );
  }
  return identity;
}

function identityFromPem(file: string, text: string): Identity {
  const key = keyFromPem(file, text);
  const problem = keyProblem(key);
  if (problem !== undefined) throw invalid(file, problem);
  return Identity.fromPrivateKey(key);
}

function keyFromPem(file: string, text: string): KeyObject {
  const label = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1];
  if (label === undefined) {
    throw invalid(file, 'not a ridproxy identity (expected a PEM private key or the JSON form)');
  }
  if (label.includes('PUBLIC KEY') || label === 'CERTIFICATE') {
    throw invalid(file, `contains a ${label.toLowerCase()}, not a private key`);
  }
  if (label.includes('ENCRYPTED')) {
    throw invalid(file, 'the private key is encrypted; ridproxy needs an unencrypted PKCS8 key');
  }
  try {
    return createPrivateKey({ key: text, format: 'pem' });
  } catch (err) {
    throw invalid(file, `not a valid PEM private key (${(err as Error).message})`, err);
  }
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function identityFromJson(file: string, text: string): Identity {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(file, `invalid JSON (${(err as Error).message})`, err);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid(file, 'invalid JSON identity: not an object');
  const o = doc as Record<string, unknown>;
  if (o.type !== 'ridproxy-identity') throw invalid(file, `not a ridproxy identity (type is ${JSON.stringify(o.type)}, expected "ridproxy-identity")`);
  if (o.version !== 1) throw invalid(file, `unsupported identity version ${JSON.stringify(o.version)} (expected 1)`);
  if (typeof o.privateKey !== 'string' || o.privateKey.length === 0 || !BASE64_RE.test(o.privateKey)) {
    throw invalid(file, 'privateKey must be the base64 PKCS8 DER private key');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(o.privateKey, 'base64'), format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw invalid(file, `privateKey is not a valid PKCS8 private key (${(err as Error).message})`, err);
  }
  const problem = keyProblem(key);
  if (problem !== undefined) throw invalid(file, problem);
  // publicKey and routingId are redundant copies for people reading the file; when present they
  // must agree with the private key, or the file has been edited or corrupted.
  const identity = Identity.fromPrivateKey(key);
  if (o.publicKey !== undefined && o.publicKey !== identity.publicKey.toString('hex')) {
    throw invalid(file, `publicKey ${JSON.stringify(o.publicKey)} does not match the private key (expected ${identity.publicKey.toString('hex')})`);
  }
  if (o.routingId !== undefined && (typeof o.routingId !== 'string' || o.routingId.toLowerCase() !== identity.routingId.toString())) {
    throw invalid(file, `routingId ${JSON.stringify(o.routingId)} does not match the private key (expected ${identity.routingId})`);
  }
  return identity;
}
