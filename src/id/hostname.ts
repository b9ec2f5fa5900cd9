import { InvalidArgumentError } from '../errors.js';
import { RoutingId } from './routing-id.js';

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
/** A routing id's 16 bytes in base32 without padding: 26 characters. */
const RID_LABEL_LENGTH = 26;
/** One DNS label, lowercase. */
export const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const RID_LABEL_RE = /^[a-z2-7]{26}$/;

/** The host name label every server has: its routing id in lowercase base32 (RFC 4648, no padding). */
export function routingIdLabel(rid: RoutingId): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of rid.bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** The routing id a routing-id label names, or undefined when `label` is not one. */
export function routingIdOfLabel(label: string): RoutingId | undefined {
  if (!RID_LABEL_RE.test(label)) return undefined;
  const bytes = Buffer.alloc(RoutingId.SIZE);
  let bits = 0;
  let value = 0;
  let i = 0;
  for (const ch of label) {
    value = ((value << 5) | BASE32.indexOf(ch)) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes[i++] = (value >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  // The last character carries 2 bits of padding, which must be zero for the label to be canonical.
  if ((value & ((1 << bits) - 1)) !== 0) return undefined;
  return RoutingId.fromBytes(bytes);
}

/** Why `name` cannot be asked for, or undefined when it can. */
export function hostnameProblem(name: string): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'a name must not be empty';
  if (name.length > 63) return `a name is one DNS label, at most 63 characters (got ${name.length})`;
  if (!LABEL_RE.test(name)) return `${JSON.stringify(name)} is not a DNS label: use a-z, 0-9 and "-", not at either end`;
  if (name.length === RID_LABEL_LENGTH && RID_LABEL_RE.test(name)) return `${JSON.stringify(name)} has the form of a routing id's name, which only that key may have`;
  return undefined;
}

/** Throws ERR_INVALID_OPTION when `name` cannot be asked for. */
export function checkHostname(name: string): void {
  const problem = hostnameProblem(name);
  if (problem !== undefined) throw new InvalidArgumentError('ERR_INVALID_OPTION', `invalid host name: ${problem}`);
}

