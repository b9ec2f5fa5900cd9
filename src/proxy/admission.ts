import { isIPv6 } from 'node:net';

/** Default prefix length by which IPv6 sources are grouped: one customer's /64 is one address. */
export const DEFAULT_IPV6_PREFIX_LENGTH = 64;

/**
 * The key per-address limits count under: an IPv4 address as it is (IPv4-mapped IPv6 included),
 * an IPv6 address cut to its first `prefixLength` bits, since a single host can often use every
 * address of its /64.
 */
export function addressGroup(address: string, prefixLength = DEFAULT_IPV6_PREFIX_LENGTH): string {
  if (address.startsWith('::ffff:') && !address.slice(7).includes(':')) return address.slice(7);
  if (!isIPv6(address)) return address;
  const words = expandIPv6(address);
  const out: string[] = [];
  for (let i = 0, bits = prefixLength; i < 8 && bits > 0; i++, bits -= 16) {
    const mask = bits >= 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff;
    out.push((words[i] & mask).toString(16));
  }
  return `${out.join(':')}::/${prefixLength}`;
}

/** The eight 16-bit words of an IPv6 address (any zone dropped; an embedded IPv4 tail converted). */
function expandIPv6(address: string): number[] {
  let text = address.split('%')[0];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((word) => parseInt(word, 16));
}

/** Counts live items (connections) per key, for limits per source address group. */
export class KeyedCounter {
  private readonly counts = new Map<string, number>();

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: string, delta: number): void {
    const next = this.get(key) + delta;
    if (next === 0) this.counts.delete(key);
    else this.counts.set(key, next);
  }
}
