import { isIPv4, isIPv6 } from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import { RoutingId, ridHexProblem } from './routing-id.js';

const SCHEME = 'ridp';
const ENDPOINT_FORM =
  'expected ridp://host:port/<routing id>, ridp://<proxy routing id>@host:port/<routing id> (several routes joined with ",") or ridp:///<routing id> (routing ids are 32 hex characters)';
const ADDRESS_FORM = 'expected host:port, [ipv6]:port or port';
const LABEL_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** Quotes user input for an error message, escaping control characters and capping the length. */
function quote(s: string): string {
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 120)}…` : s);
}

/** Why `host` (brackets already removed) cannot be used, or undefined when it can. */
function hostProblem(host: string): string | undefined {
  if (host.length === 0) return 'missing host';
  if (host.includes(':')) return isIPv6(host) ? undefined : `host ${quote(host)} is not a valid IPv6 address`;
  if (/^[0-9.]+$/.test(host)) return isIPv4(host) ? undefined : `host ${quote(host)} is not a valid IPv4 address`;
  if (host.length > 253) return `host name is ${host.length} characters long (at most 253)`;
  const bad = host.split('.').find((label) => !LABEL_RE.test(label));
  if (bad !== undefined) return `host ${quote(host)} is not a valid host name (bad label ${quote(bad)})`;
  return undefined;
}

function portProblem(text: string, min: number): string | number {
  if (text.length === 0) return 'missing port';
  if (!/^[0-9]+$/.test(text)) return `port ${quote(text)} is not a number`;
  const port = text.length > 5 ? Infinity : Number(text);
  if (port < min || port > 65535) return `port ${text} is out of range (${min}-65535)`;
  return port;
}

type HostPort = { host: string; port: number } | { problem: string };

/** Shared by endpoints (port 1-65535) and listen addresses (port 0 means "any free port"). */
function splitHostPort(s: string, minPort: number, defaultHost: string | undefined): HostPort {
  if (s.length === 0) return { problem: 'missing host and port' };
  let host: string;
  let portText: string;
  if (/^[0-9]+$/.test(s)) {
    if (defaultHost === undefined) return { problem: 'missing host' };
    host = defaultHost;
    portText = s;
  } else if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return { problem: 'missing "]" after the IPv6 address' };
    host = s.slice(1, close);
    if (host.length === 0) return { problem: 'empty IPv6 address in brackets' };
    if (!isIPv6(host)) return { problem: `host ${quote(host)} is not a valid IPv6 address` };
    const rest = s.slice(close + 1);
    if (rest.length === 0) return { problem: 'missing port' };
    if (!rest.startsWith(':')) return { problem: `unexpected ${quote(rest)} after the IPv6 address (expected ":port")` };
    portText = rest.slice(1);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) return { problem: 'missing port' };
    host = s.slice(0, colon);
    if (host.includes(':')) return { problem: `IPv6 addresses must be in brackets, e.g. [${host}]:${s.slice(colon + 1)}` };
    if (host.length === 0) {
      if (defaultHost === undefined) return { problem: 'missing host' };
      host = defaultHost;
    }
    portText = s.slice(colon + 1);
  }
  const hp = hostProblem(host);
  if (hp !== undefined) return { problem: hp };
  const port = portProblem(portText, minPort);
  if (typeof port === 'string') return { problem: port };
  return { host: normalizeHost(host), port };
}

/**
 * Parses a listen or forward address: `host:port`, `[v6]:port`, or a bare `port` (then
 * `defaultHost` is the host, and without one it is an error). Port 0 is accepted: it asks the
 * system for any free port.
 */
export function parseAddress(s: string, defaultHost?: string): { host: string; port: number } {
  const text = typeof s === 'string' ? s.trim() : '';
  const r = splitHostPort(text, 0, defaultHost);
  if ('problem' in r) {
    throw new InvalidArgumentError('ERR_INVALID_ADDRESS', `invalid address ${quote(String(s))}: ${r.problem}; ${ADDRESS_FORM}`);
  }
  return r;
}

/** Host names and addresses compare case-insensitively; an IPv6 zone (an interface name) does not. */
function normalizeHost(host: string): string {
  const zone = host.indexOf('%');
  return zone < 0 ? host.toLowerCase() : host.slice(0, zone).toLowerCase() + host.slice(zone);
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Where to connect (a proxy or a process listening directly) and the routing id to reach there.
 * The null routing id means "whatever process answers at that address". When a proxy is in
 * between, `proxyRoutingId` pins it: the process at the address must prove that key before
 * anything secret is sent to it.
 *
 * An endpoint may also name a routing id and no address (`ridp:///<rid>`, host "" and port 0):
 * a process that listens nowhere is still reachable over the VCs it dialed, so this is what it
 * reports as its endpoint, and only a VC already open to it can carry a flow there.
 */
export class Endpoint {
  /** Lowercase (except an IPv6 zone), without IPv6 brackets; "" when the endpoint has no address. */
  readonly host: string;
  /** 0 when the endpoint has no address. */
  readonly port: number;
  readonly routingId: RoutingId;
  /** The proxy's routing id, or the null one when the process at the address is the destination itself. */
  readonly proxyRoutingId: RoutingId;
  /** Routes after this one (withRoutes), each an endpoint of one route. */
  #others: Endpoint[] = [];

  constructor(host: string, port: number, routingId: RoutingId, proxyRoutingId: RoutingId = RoutingId.NULL) {
    if (!(routingId instanceof RoutingId) || !(proxyRoutingId instanceof RoutingId)) {
      throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', 'invalid endpoint: routing ids must be RoutingIds');
    }
    if (host === '' && port === 0) {
      if (routingId.isNull()) throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', 'invalid endpoint: an endpoint without an address must name a routing id');
      if (!proxyRoutingId.isNull()) throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', 'invalid endpoint: an endpoint without an address cannot name a proxy');
      this.host = host;
      this.port = port;
      this.routingId = routingId;
      this.proxyRoutingId = proxyRoutingId;
      return;
    }
    const bare = typeof host === 'string' && host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    const hp = typeof bare === 'string' ? hostProblem(bare) : 'host must be a string';
    if (hp !== undefined) throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', `invalid endpoint: ${hp}`);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', `invalid endpoint: port ${String(port)} is out of range (1-65535)`);
    }
    this.host = normalizeHost(bare);
    this.port = port;
    this.routingId = routingId;
    this.proxyRoutingId = proxyRoutingId;
  }

  /** False for `ridp:///<rid>`, which only a VC already open to that routing id can reach. */
  get hasAddress(): boolean {
    return this.port !== 0;
  }

  /** `host:port`, or "" when the endpoint has no address. */
  get address(): string {
    return this.hasAddress ? formatAddress(this.host, this.port) : '';
  }

  /**
   * The routing id the process at the address must prove on the hop: the proxy's when one is
   * named, else the destination's own (it listens directly, or it is the proxy). Null when the
   * endpoint pins nothing.
   */
  get hopRoutingId(): RoutingId {
    return this.proxyRoutingId.isNull() ? this.routingId : this.proxyRoutingId;
  }

  /**
   * Accepts `ridp://host:port/<rid>`, `ridp://host:port` (null routing id),
   * `ridp://<proxy rid>@host:port/<rid>`, several routes to one process joined with commas
   * (`ridp://<p1>@h1:1,<p2>@h2:2/<rid>`), `ridp:///<rid>` (no address), and the same without the
   * scheme (then the address-less form is `/<rid>`). Surrounding whitespace is ignored, as pasted
   * endpoints often carry a newline.
   */
  static parse(s: string): Endpoint {
    if (typeof s !== 'string') {
      throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', `invalid endpoint: expected a string, got ${typeof s}; ${ENDPOINT_FORM}`);
    }
    const fail = (problem: string): never => {
      throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', `invalid endpoint ${quote(s)}: ${problem}; ${ENDPOINT_FORM}`);
    };
    let rest = s.trim();
    const sep = rest.indexOf('://');
    if (sep >= 0) {
      const scheme = rest.slice(0, sep);
      if (scheme.toLowerCase() !== SCHEME) fail(`unknown scheme ${quote(scheme)} (only ridp:// is supported)`);
      rest = rest.slice(sep + 3);
    }
    const slash = rest.indexOf('/');
    const authority = slash < 0 ? rest : rest.slice(0, slash);
    const path = slash < 0 ? '' : rest.slice(slash + 1);
    const routingId = (): RoutingId => {
      if (path.length === 0) return RoutingId.NULL;
      if (path.includes('/')) fail(`unexpected path ${quote(path.slice(path.indexOf('/')))} after the routing id`);
      const problem = ridHexProblem(path);
      if (problem !== undefined) fail(`bad routing id ${quote(path)}: ${problem}`);
      return RoutingId.parse(path);
    };
    if (authority.length === 0 && slash === 0) {
      const rid = routingId();
      if (rid.isNull()) fail('an endpoint without an address must name a routing id that is not the null one');
      return new Endpoint('', 0, rid);
    }
    // Several routes to one process (a server registered on several proxies) are separated by commas.
    const parts = authority.split(',');
    const routes = parts.map((part) => {
      let proxyRid = RoutingId.NULL;
      let address = part;
      const at = part.indexOf('@');
      if (at >= 0) {
        const pinned = part.slice(0, at);
        const problem = ridHexProblem(pinned);
        if (problem !== undefined) fail(`bad proxy routing id ${quote(pinned)} before "@": ${problem}`);
        proxyRid = RoutingId.parse(pinned);
        if (proxyRid.isNull()) fail('the proxy routing id before "@" is the null routing id');
        address = part.slice(at + 1);
      }
      const hp = splitHostPort(address, 1, undefined);
      if ('problem' in hp) return fail(parts.length > 1 ? `route ${quote(part)}: ${hp.problem}` : hp.problem);
      return { ...hp, proxyRid };
    });
    const rid = routingId();
    if (rid.isNull()) {
      if (routes.some((route) => !route.proxyRid.isNull())) fail('an endpoint naming a proxy routing id must name the destination routing id too');
      if (routes.length > 1) fail('an endpoint with several addresses must name the destination routing id');
    }
    const [first, ...others] = routes.map((route) => new Endpoint(route.host, route.port, rid, route.proxyRid));
    return others.length === 0 ? first : Endpoint.withRoutes([first, ...others]);
  }

  /**
   * One endpoint for a process reachable by several routes (each a proxy it is registered on, or
   * an address it listens on), tried in this order; all must name the same routing id.
   */
  static withRoutes(routes: readonly Endpoint[]): Endpoint {
    if (routes.length === 0) throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', 'invalid endpoint: no routes');
    const [first] = routes;
    const flat = routes.flatMap((route) => route.routes);
    if (flat.some((route) => !route.routingId.equals(first.routingId) || !route.hasAddress)) {
      throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', 'invalid endpoint: every route must have an address and name the same routing id');
    }
    if (first.routingId.isNull() && flat.length > 1) throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', 'invalid endpoint: an endpoint with several addresses must name the destination routing id');
    const unique = flat.filter((route, i) => flat.findIndex((other) => other.equalsRoute(route)) === i);
    const combined = new Endpoint(unique[0].host, unique[0].port, unique[0].routingId, unique[0].proxyRoutingId);
    combined.#others = unique.slice(1);
    return combined;
  }

  /** Every route to the process, this endpoint's own address first, each as an endpoint of one route. */
  get routes(): Endpoint[] {
    return this.#others.length === 0 ? [this] : [new Endpoint(this.host, this.port, this.routingId, this.proxyRoutingId), ...this.#others];
  }

  /**
   * The null routing id is left out, so an address-only endpoint prints as `ridp://host:port`; a
   * routing-id-only one prints as `ridp:///<rid>`; several routes are joined with commas.
   */
  toString(): string {
    const authority = this.routes.map((route) => `${route.proxyRoutingId.isNull() ? '' : `${route.proxyRoutingId}@`}${route.address}`).join(',');
    const base = `${SCHEME}://${authority}`;
    return this.routingId.isNull() ? base : `${base}/${this.routingId}`;
  }

  toJSON(): string {
    return this.toString();
  }

  withRoutingId(rid: RoutingId): Endpoint {
    const routes = this.routes.map((route) => new Endpoint(route.host, route.port, rid, route.proxyRoutingId));
    return routes.length === 1 ? routes[0] : Endpoint.withRoutes(routes);
  }

  equals(o: Endpoint): boolean {
    if (this === o) return true;
    const mine = this.routes;
    const theirs = o.routes;
    return mine.length === theirs.length && mine.every((route, i) => route.equalsRoute(theirs[i]));
  }

  private equalsRoute(o: Endpoint): boolean {
    return this.host === o.host && this.port === o.port && this.routingId.equals(o.routingId) && this.proxyRoutingId.equals(o.proxyRoutingId);
  }
}
