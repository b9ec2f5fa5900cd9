import { isIPv4, isIPv6 } from 'node:net';

/**
 * The PROXY protocol header (haproxy's proxy-protocol.txt, versions 1 and 2) that `serve
 * --proxy-protocol` writes to its local service before any byte of a flow, so a service behind
 * the tunnel (nginx `proxy_protocol`, haproxy `accept-proxy`, ...) learns the public client's
 * address. Only the encoder: the parsing side is the local service's.
 */
export type ProxyProtocolVersion = 'v1' | 'v2';

export const PROXY_PROTOCOL_VERSIONS: readonly ProxyProtocolVersion[] = ['v1', 'v2'];

export interface SocketAddress {
  address: string;
  port: number;
}

/** The 12 bytes every version 2 header starts with. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_PROXY = 0x21; // version 2, command PROXY
const V2_LOCAL = 0x20; // version 2, command LOCAL
const V2_TCP4 = 0x11;
const V2_TCP6 = 0x21;
const V2_UNSPEC = 0x00;

/**
 * The header for a connection from `source` to `destination`; with no addresses (a flow that did
 * not come from the public side, or an address that is no IP), the one that says so: v1
 * `PROXY UNKNOWN`, v2 command LOCAL, after which a receiver uses the connection's own addresses.
 * Both addresses of one header are of one family: when only one is IPv6, the other is written as
 * its IPv4-mapped IPv6 form; an IPv4-mapped source (a dual-stack listener's) is written as IPv4.
 */
export function proxyHeader(version: ProxyProtocolVersion, source?: SocketAddress, destination?: SocketAddress): Buffer {
  const pair = source !== undefined && destination !== undefined ? sameFamily(source, destination) : undefined;
  if (version === 'v1') {
    if (pair === undefined) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    const [src, dst, family] = pair;
    return Buffer.from(`PROXY ${family === 4 ? 'TCP4' : 'TCP6'} ${src.address} ${dst.address} ${src.port} ${dst.port}\r\n`, 'latin1');
  }
  if (pair === undefined) return Buffer.concat([V2_SIGNATURE, Buffer.from([V2_LOCAL, V2_UNSPEC, 0, 0])]);
  const [src, dst, family] = pair;
  const size = family === 4 ? 4 : 16;
  const header = Buffer.alloc(16 + 2 * size + 4);
  V2_SIGNATURE.copy(header, 0);
  header[12] = V2_PROXY;
  header[13] = family === 4 ? V2_TCP4 : V2_TCP6;
  header.writeUInt16BE(2 * size + 4, 14);
  const bytes = family === 4 ? ipv4Bytes : ipv6Bytes;
  bytes(src.address).copy(header, 16);
  bytes(dst.address).copy(header, 16 + size);
  header.writeUInt16BE(src.port, 16 + 2 * size);
  header.writeUInt16BE(dst.port, 18 + 2 * size);
  return header;
}

/** `host:port` or `[v6]:port`, as the ingress's origin message gives a client's address, as an IP and a port; undefined for anything else. */
export function parseSocketAddress(text: string): SocketAddress | undefined {
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (match === null) return undefined;
  const port = Number(match[2]);
  const address = match[1]!;
  if (port > 0xffff || !(isIPv4(address) || isIPv6(address))) return undefined;
  return { address, port };
}

function sameFamily(source: SocketAddress, destination: SocketAddress): [SocketAddress, SocketAddress, 4 | 6] | undefined {
  const src = unmapped(source);
  const dst = unmapped(destination);
  if (src === undefined || dst === undefined || !validPort(src.port) || !validPort(dst.port)) return undefined;
  if (isIPv4(src.address) && isIPv4(dst.address)) return [src, dst, 4];
  const mapped = (a: SocketAddress): SocketAddress => (isIPv4(a.address) ? { address: `::ffff:${a.address}`, port: a.port } : a);
  return [mapped(src), mapped(dst), 6];
}

/** The address as an IPv4 one when it is an IPv4-mapped IPv6 address; undefined when it is no IP. */
function unmapped(a: SocketAddress): SocketAddress | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a.address);
  if (mapped !== null && isIPv4(mapped[1]!)) return { address: mapped[1]!, port: a.port };
  // A scoped address (fe80::1%eth0) has no place in the header: its scope means nothing to the receiver.
  const address = a.address.replace(/%.*$/, '');
  return isIPv4(address) || isIPv6(address) ? { address, port: a.port } : undefined;
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 0xffff;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

/** The 16 bytes of an IPv6 address in any text form Node accepts (`::` shorthand, an IPv4 tail). */
function ipv6Bytes(address: string): Buffer {
  let text = address;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail !== null) {
    const [a, b, c, d] = tail[1]!.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -tail[1]!.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((group, i) => out.writeUInt16BE(parseInt(group, 16), 2 * i));
  return out;
}
