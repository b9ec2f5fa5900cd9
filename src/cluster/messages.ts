import { Identity } from '../id/identity.js';
import { RoutingId } from '../id/routing-id.js';
import { formatAddress, parseAddress } from '../id/endpoint.js';

// What the proxies of a cluster say to each other through the directory (NATS), as small JSON
// documents. Anything read from NATS is untrusted: a document that is too large, malformed, or
// not signed by a member is dropped, never thrown out of a callback.

/** Largest directory message read; the real ones are a few hundred bytes. */
export const MAX_MESSAGE_SIZE = 2048;

/** The answer to a lookup: the proxy holding a routing id, where other proxies reach it, and since when (its claim's `at`). */
export interface Holder {
  proxy: string;
  host: string;
  port: number;
  at: number;
}

/**
 * A proxy's claim that a server registered a routing id on it: published on the routing id's
 * subject whenever it registers there, so that a proxy still holding an older registration of the
 * same key lets it go (docs/cluster.md). Signed with the claiming proxy's key, so that only a
 * member can make another proxy drop a registration.
 */
export interface Claim {
  rid: string;
  proxy: string;
  /** The claiming proxy's public key, hex; its routing id is `proxy`. */
  key: string;
  /** The address the server connected from, as the claiming proxy saw it. */
  address: string;
  /** Milliseconds since the epoch, later than every claim for this routing id its proxy knew of: the newest claim wins. */
  at: number;
  sig: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

export function encodeJson(value: object): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

function decodeJson(data: Uint8Array): Record<string, unknown> | undefined {
  if (data.length === 0 || data.length > MAX_MESSAGE_SIZE) return undefined;
  try {
    const value: unknown = JSON.parse(decoder.decode(data));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function isRid(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{32}$/.test(value);
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

export function encodeHolder(holder: Holder): Uint8Array {
  return encodeJson({ v: 1, proxy: holder.proxy, address: formatAddress(holder.host, holder.port), at: holder.at });
}

/** A lookup answer, or undefined for one that is not one. */
export function decodeHolder(data: Uint8Array): Holder | undefined {
  const doc = decodeJson(data);
  if (doc === undefined || !isRid(doc.proxy) || typeof doc.address !== 'string' || doc.address.length > 300 || !isTime(doc.at)) return undefined;
  try {
    const { host, port } = parseAddress(doc.address);
    return { proxy: doc.proxy, host, port, at: doc.at };
  } catch {
    return undefined;
  }
}

/** The bytes a claim's signature covers: every field, and the cluster, so a claim is good for one cluster only. */
function claimBytes(cluster: string, claim: Omit<Claim, 'sig' | 'key'>): Buffer {
  return Buffer.from(`ridproxy cluster claim v1\n${cluster}\n${claim.rid}\n${claim.proxy}\n${claim.address}\n${claim.at}`, 'utf8');
}

export function signClaim(cluster: string, identity: Identity, claim: Omit<Claim, 'sig' | 'key' | 'proxy'>): Claim {
  const full = { ...claim, proxy: identity.routingId.toString() };
  return { ...full, key: identity.publicKey.toString('hex'), sig: identity.sign(claimBytes(cluster, full)).toString('hex') };
}

/**
 * A claim read from the routing id subject `rid`, if it is well formed, for that routing id, and
 * signed by the key of the proxy it names; whether that proxy is a member is the caller's check.
 */
export function decodeClaim(cluster: string, rid: string, data: Uint8Array): Claim | undefined {
  const doc = decodeJson(data);
  if (doc === undefined || doc.rid !== rid || !isRid(doc.proxy) || !isTime(doc.at)) return undefined;
  const { key, sig, address } = doc;
  if (typeof key !== 'string' || !/^[0-9a-f]{64}$/.test(key) || typeof sig !== 'string' || !/^[0-9a-f]{128}$/.test(sig)) return undefined;
  if (typeof address !== 'string' || address.length > 300) return undefined;
  const publicKey = Buffer.from(key, 'hex');
  if (RoutingId.fromPublicKey(publicKey).toString() !== doc.proxy) return undefined;
  const claim: Claim = { rid, proxy: doc.proxy, key, address, at: doc.at, sig };
  return Identity.verify(publicKey, claimBytes(cluster, claim), Buffer.from(sig, 'hex')) ? claim : undefined;
}

/** Whether claim `a` (at, proxy) is newer than `b`: later, or as late and from the greater proxy routing id, so that every proxy picks the same one. */
export function newer(a: { at: number; proxy: string }, b: { at: number; proxy: string }): boolean {
  return a.at !== b.at ? a.at > b.at : a.proxy > b.proxy;
}
