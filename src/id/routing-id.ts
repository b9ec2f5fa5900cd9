import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

const HEX_RE = /^[0-9a-fA-F]*$/;

/**
 * Why `hex` is not a routing id, or undefined when it is one. Shared with the endpoint parser so
 * both report the same reason in their own framing.
 */
export function ridHexProblem(hex: string): string | undefined {
  if (hex.length !== RoutingId.SIZE * 2) {
    return `expected ${RoutingId.SIZE * 2} hex characters, got ${hex.length}`;
  }
  if (!HEX_RE.test(hex)) {
    const i = [...hex].findIndex((c) => !/[0-9a-fA-F]/.test(c));
    return `${JSON.stringify(hex[i])} at position ${i + 1} is not a hex digit`;
  }
  return undefined;
}

/**
 * Copies into memory of its own: a RID is often kept for the life of a registration or VC, and a
 * view would pin the whole socket chunk (or 8 KiB pool slab) it was read from.
 */
function ownCopy(b: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length);
  out.set(b);
  return out;
}

/** A 16-byte routing ID: the first 16 bytes of SHA-256 over a raw 32-byte Ed25519 public key. */
export class RoutingId {
  static readonly SIZE = 16;
  /** All zeros: a process that only dials, or "whatever process answers" in an endpoint. */
  static readonly NULL: RoutingId = new RoutingId(Buffer.alloc(RoutingId.SIZE));

  /** Treat as read-only: RIDs are shared freely and used as map keys via toString(). */
  readonly bytes: Buffer;
  #hex: string | undefined;

  private constructor(bytes: Buffer) {
    this.bytes = bytes;
  }

  static fromPublicKey(raw32: Buffer): RoutingId {
    if (!Buffer.isBuffer(raw32) || raw32.length !== 32) {
      const got = Buffer.isBuffer(raw32) ? `${raw32.length} bytes` : typeof raw32;
      throw new InvalidArgumentError('ERR_INVALID_IDENTITY', `an Ed25519 public key is 32 raw bytes, got ${got}`);
    }
    const digest = createHash('sha256').update(raw32).digest();
    return new RoutingId(ownCopy(digest.subarray(0, RoutingId.SIZE)));
  }

  static fromBytes(b: Uint8Array): RoutingId {
    if (!(b instanceof Uint8Array) || b.length !== RoutingId.SIZE) {
      const got = b instanceof Uint8Array ? `${b.length} bytes` : typeof b;
      throw new InvalidArgumentError('ERR_INVALID_RID', `a routing id is ${RoutingId.SIZE} bytes, got ${got}`);
    }
    return new RoutingId(ownCopy(b));
  }

  static parse(hex: string): RoutingId {
    if (typeof hex !== 'string') {
      throw new InvalidArgumentError('ERR_INVALID_RID', `invalid routing id: expected a string of ${RoutingId.SIZE * 2} hex characters, got ${typeof hex}`);
    }
    const problem = ridHexProblem(hex);
    if (problem !== undefined) {
      throw new InvalidArgumentError('ERR_INVALID_RID', `invalid routing id ${JSON.stringify(hex)}: ${problem}`);
    }
    const bytes = Buffer.allocUnsafeSlow(RoutingId.SIZE);
    bytes.write(hex, 'hex');
    return new RoutingId(bytes);
  }

  isNull(): boolean {
    return this === RoutingId.NULL || this.bytes.every((b) => b === 0);
  }

  equals(o: RoutingId): boolean {
    return this === o || this.bytes.equals(o.bytes);
  }

  toString(): string {
    return (this.#hex ??= this.bytes.toString('hex'));
  }

  /** So status documents and structured logs carry the hex form rather than a byte array. */
  toJSON(): string {
    return this.toString();
  }
}
