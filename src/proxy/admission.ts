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

/** How long token failures from one address group are remembered. */
export const TOKEN_FAILURE_WINDOW = 60_000;
/** Past this many remembered failure records, expired ones are swept so the table stays bounded by live attackers. */
const FAILURE_SWEEP_SIZE = 10_000;

export interface AdmissionLimits {
  maxConnections: number;
  maxConnectionsPerAddress: number;
  ipv6PrefixLength: number;
  /** Failed token checks from one address group within TOKEN_FAILURE_WINDOW after which its connections are refused. */
  maxTokenFailures: number;
}

/**
 * Who may open a hop connection, decided before any byte is parsed so that a flood costs as
 * little as possible: the total and per-address-group connection limits, and a lockout for an
 * address group that keeps presenting wrong tokens (each guess already costs a handshake).
 */
export class Admission {
  private readonly connectionsByGroup = new KeyedCounter();
  private readonly failures = new Map<string, { count: number; since: number }>();

  constructor(private readonly limits: AdmissionLimits) {}

  /**
   * The group `address` counts under, and whether a new connection from it is admitted (with
   * `open` connections held now): `refused` says why not.
   */
  admit(address: string, open: number): { group: string; refused?: { code: 'ERR_LIMIT' | 'ERR_UNAUTHORIZED'; reason: string } } {
    const group = addressGroup(address, this.limits.ipv6PrefixLength);
    if (open >= this.limits.maxConnections) return { group, refused: { code: 'ERR_LIMIT', reason: `the proxy holds its limit of ${this.limits.maxConnections} connections` } };
    if (this.connectionsByGroup.get(group) >= this.limits.maxConnectionsPerAddress) {
      return { group, refused: { code: 'ERR_LIMIT', reason: `address ${group} holds its limit of ${this.limits.maxConnectionsPerAddress} connections` } };
    }
    if (this.lockedOut(group)) {
      return { group, refused: { code: 'ERR_UNAUTHORIZED', reason: `address ${group} presented ${this.limits.maxTokenFailures} wrong tokens within a minute` } };
    }
    this.connectionsByGroup.add(group, 1);
    return { group };
  }

  release(group: string): void {
    this.connectionsByGroup.add(group, -1);
  }

  tokenFailed(group: string): void {
    const now = Date.now();
    const record = this.failures.get(group);
    if (record === undefined || now - record.since >= TOKEN_FAILURE_WINDOW) {
      if (this.failures.size >= FAILURE_SWEEP_SIZE) this.sweep(now);
      this.failures.set(group, { count: 1, since: now });
    } else {
      record.count++;
    }
  }

  private lockedOut(group: string): boolean {
    const record = this.failures.get(group);
    if (record === undefined) return false;
    if (Date.now() - record.since >= TOKEN_FAILURE_WINDOW) {
      this.failures.delete(group);
      return false;
    }
    return record.count >= this.limits.maxTokenFailures;
  }

  private sweep(now: number): void {
    for (const [group, record] of this.failures) if (now - record.since >= TOKEN_FAILURE_WINDOW) this.failures.delete(group);
  }
}
