/**
 * Reads the server name (SNI, RFC 6066 section 3) a TLS client asks for, from the ClientHello it
 * opens its connection with, and nothing else: the blind HTTPS ingress routes a connection by it
 * and passes the bytes on untouched. The reader is fed the connection's chunks as they come, never
 * holds more than its bound, and says as soon as it can that the bytes are no ClientHello.
 *
 * Formats (RFC 8446 5.1 and 4.1.2, the same in TLS 1.0 to 1.3 for what is read here):
 *   record:      type (u8, 22 = handshake) | legacy version (u16, 0x03xx) | length (u16, 1..2^14) | fragment
 *   handshake:   type (u8, 1 = client_hello) | length (u24) | body, spread over as many records as it takes
 *   ClientHello: version (2) | random (32) | session id <0..32> | cipher suites <2..2^16-2>
 *                | compression methods <1..2^8-1> | extensions <0..2^16-1>, absent in old clients
 *   server_name (extension 0): list <1..2^16-1> of name type (u8, 0 = host_name) | host name <1..2^16-1>
 */

/** TLS alert descriptions (RFC 8446 6.2) the ingress refuses connections with. */
export const TlsAlert = {
  UnexpectedMessage: 10,
  RecordOverflow: 22,
  HandshakeFailure: 40,
  IllegalParameter: 47,
  DecodeError: 50,
  ProtocolVersion: 70,
  InternalError: 80,
  MissingExtension: 109,
  UnrecognizedName: 112,
} as const;

/** A fatal alert record (level 2), as the first and only thing a refusing server sends. */
export function alertRecord(description: number): Buffer {
  return Buffer.from([21, 3, 3, 0, 2, 2, description]);
}

/** Bytes a ClientHello may take, record headers included, by default: real ones are 0.5-2 KiB (4 KiB with a large session ticket). */
export const DEFAULT_MAX_HELLO_BYTES = 16 * 1024;

const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
const MAX_RECORD = 1 << 14;
const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXTENSION_SERVER_NAME = 0;
const NAME_TYPE_HOST = 0;
/** A host name as RFC 6066 has it: ASCII labels of letters, digits, '-' (and '_', seen in the wild), no trailing dot. */
const HOST_RE = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/**
 * What the bytes so far say: more are needed; the ClientHello is complete, with the host name it
 * asks for (lowercase) or none; or they are no ClientHello this ingress accepts, with the alert to
 * answer (none when they are not TLS at all, which an alert would not help).
 */
export type HelloResult =
  | { kind: 'more' }
  | { kind: 'hello'; serverName: string | undefined }
  | { kind: 'invalid'; problem: string; alert: number | undefined };

const MORE: HelloResult = { kind: 'more' };

/**
 * An incremental reader of the ClientHello at the start of a TLS connection. `push` each chunk
 * the connection delivers; once it answers anything but `more`, it keeps that answer. Bytes of a
 * chunk past the ClientHello are not looked at. Memory: the ClientHello's body, at most `maxBytes`.
 */
export class ClientHelloReader {
  private readonly recordHeader = Buffer.alloc(RECORD_HEADER);
  private recordHeaderFill = 0;
  /** Bytes of the current record's fragment still to come; 0 between records. */
  private recordLeft = 0;
  private records = 0;
  private readonly handshakeHeader = Buffer.alloc(HANDSHAKE_HEADER);
  private handshakeHeaderFill = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;
  private consumed = 0;
  private result: HelloResult = MORE;

  constructor(readonly maxBytes = DEFAULT_MAX_HELLO_BYTES) {}

  push(chunk: Uint8Array): HelloResult {
    if (this.result.kind !== 'more') return this.result;
    let i = 0;
    while (i < chunk.length) {
      if (this.recordLeft === 0) {
        const n = Math.min(RECORD_HEADER - this.recordHeaderFill, chunk.length - i);
        this.recordHeader.set(chunk.subarray(i, i + n), this.recordHeaderFill);
        this.recordHeaderFill += n;
        i += n;
        this.consumed += n;
        if (this.records === 0 && this.recordHeader[0] !== CONTENT_HANDSHAKE) {
          // Said at the first byte: a plain HTTP request or an SSLv2 hello is no TLS record at all.
          return this.fail(`the connection does not start with a TLS handshake record (first byte 0x${this.recordHeader[0]!.toString(16).padStart(2, '0')})`, undefined);
        }
        if (this.recordHeaderFill < RECORD_HEADER) break;
        this.recordHeaderFill = 0;
        const problem = this.startRecord();
        if (problem !== undefined) return problem;
        continue;
      }
      const n = Math.min(this.recordLeft, chunk.length - i);
      if (this.consumed + n > this.maxBytes) return this.oversize();
      const done = this.takeHandshake(chunk.subarray(i, i + n));
      if (done !== undefined) return done;
      i += n;
      this.recordLeft -= n;
      this.consumed += n;
    }
    if (this.consumed > this.maxBytes) return this.oversize();
    return MORE;
  }

  private startRecord(): HelloResult | undefined {
    const type = this.recordHeader[0]!;
    const major = this.recordHeader[1]!;
    const length = this.recordHeader.readUInt16BE(3);
    this.records++;
    if (type !== CONTENT_HANDSHAKE) return this.fail(`a TLS record of type ${type} came before the ClientHello was complete`, TlsAlert.UnexpectedMessage);
    if (major !== 3) return this.fail(`not a TLS record: version byte ${major}`, this.records === 1 ? undefined : TlsAlert.ProtocolVersion);
    // RFC 8446 5.1: handshake fragments are never empty, and no plaintext record is longer than 2^14.
    if (length === 0) return this.fail('an empty handshake record', TlsAlert.DecodeError);
    if (length > MAX_RECORD) return this.fail(`a TLS record of ${length} bytes, over 2^14`, TlsAlert.RecordOverflow);
    this.recordLeft = length;
    return undefined;
  }

  /** Takes handshake bytes from a record's fragment; the result once the ClientHello is complete. */
  private takeHandshake(bytes: Uint8Array): HelloResult | undefined {
    let j = 0;
    if (this.body === undefined) {
      const n = Math.min(HANDSHAKE_HEADER - this.handshakeHeaderFill, bytes.length);
      this.handshakeHeader.set(bytes.subarray(0, n), this.handshakeHeaderFill);
      this.handshakeHeaderFill += n;
      j = n;
      if (this.handshakeHeaderFill < HANDSHAKE_HEADER) return undefined;
      const type = this.handshakeHeader[0]!;
      const length = this.handshakeHeader.readUIntBE(1, 3);
      if (type !== HANDSHAKE_CLIENT_HELLO) return this.fail(`the first handshake message is of type ${type}, not a ClientHello`, TlsAlert.UnexpectedMessage);
      if (length + HANDSHAKE_HEADER + RECORD_HEADER > this.maxBytes) return this.oversize(length);
      if (length === 0) return this.fail('an empty ClientHello', TlsAlert.DecodeError);
      this.body = Buffer.allocUnsafe(length);
    }
    const n = Math.min(this.body.length - this.bodyFill, bytes.length - j);
    this.body.set(bytes.subarray(j, j + n), this.bodyFill);
    this.bodyFill += n;
    if (this.bodyFill < this.body.length) return undefined;
    const parsed = parseClientHello(this.body);
    this.body = undefined;
    this.result = typeof parsed === 'string' ? { kind: 'invalid', problem: parsed, alert: TlsAlert.DecodeError } : { kind: 'hello', serverName: parsed.serverName };
    return this.result;
  }

  private oversize(length?: number): HelloResult {
    const what = length === undefined ? `more than ${this.maxBytes} bytes` : `${length} bytes`;
    return this.fail(`the ClientHello takes ${what}, over this ingress's limit of ${this.maxBytes}`, TlsAlert.HandshakeFailure);
  }

  private fail(problem: string, alert: number | undefined): HelloResult {
    this.body = undefined;
    this.result = { kind: 'invalid', problem, alert };
    return this.result;
  }
}

/**
 * The host name a complete ClientHello body asks for (undefined: it sends no server_name), or what
 * is wrong with it. Every length is checked against what encloses it; an extension type that comes
 * twice, or a server_name with two host names, is refused as RFC 8446 4.2 and RFC 6066 3 require.
 */
export function parseClientHello(body: Buffer): { serverName: string | undefined } | string {
  let p = 0;
  const need = (n: number): boolean => p + n <= body.length;
  if (!need(2 + 32 + 1)) return 'the ClientHello is too short';
  p += 2 + 32;
  const sessionId = body[p]!;
  if (sessionId > 32) return `a session id of ${sessionId} bytes, over 32`;
  p += 1 + sessionId;
  if (!need(2)) return 'the ClientHello ends before its cipher suites';
  const suites = body.readUInt16BE(p);
  if (suites < 2 || suites % 2 !== 0) return `a cipher suite list of ${suites} bytes`;
  p += 2 + suites;
  if (!need(1)) return 'the ClientHello ends before its compression methods';
  const compression = body[p]!;
  if (compression < 1) return 'no compression method';
  p += 1 + compression;
  if (p > body.length) return 'the ClientHello ends inside its compression methods';
  // Clients before TLS 1.2 could stop here: no extensions, so no server name.
  if (p === body.length) return { serverName: undefined };
  if (!need(2)) return 'a truncated extensions length';
  const extensionsLength = body.readUInt16BE(p);
  p += 2;
  if (p + extensionsLength !== body.length) return 'the extensions do not fill the rest of the ClientHello';
  const seen = new Set<number>();
  let serverName: string | undefined;
  while (p < body.length) {
    if (!need(4)) return 'a truncated extension header';
    const type = body.readUInt16BE(p);
    const length = body.readUInt16BE(p + 2);
    p += 4;
    if (!need(length)) return `extension ${type} runs past the end of the ClientHello`;
    if (seen.has(type)) return `extension ${type} comes twice`;
    seen.add(type);
    if (type === EXTENSION_SERVER_NAME) {
      const name = parseServerName(body.subarray(p, p + length));
      if ('problem' in name) return name.problem;
      serverName = name.host;
    }
    p += length;
  }
  return { serverName };
}

/** The host name of a server_name extension's data (undefined when it has no host_name entry), or what is wrong with it. */
function parseServerName(data: Buffer): { host: string | undefined } | { problem: string } {
  if (data.length < 2) return { problem: 'a truncated server_name list' };
  const listLength = data.readUInt16BE(0);
  if (listLength + 2 !== data.length || listLength === 0) return { problem: 'the server_name list length does not match its extension' };
  let p = 2;
  let host: string | undefined;
  while (p < data.length) {
    if (p + 3 > data.length) return { problem: 'a truncated server_name entry' };
    const nameType = data[p]!;
    const length = data.readUInt16BE(p + 1);
    p += 3;
    if (p + length > data.length) return { problem: 'a server_name entry runs past its list' };
    if (nameType === NAME_TYPE_HOST) {
      if (host !== undefined) return { problem: 'two host names in one server_name' };
      const raw = data.subarray(p, p + length);
      // Checked as bytes first: a name with bytes outside ASCII is no DNS name, and must not reach a log as one.
      if (length === 0 || length > 253 || raw.some((byte) => byte < 0x21 || byte > 0x7e)) return { problem: `a host name that is not a DNS name (${length} bytes)` };
      const text = raw.toString('latin1').toLowerCase();
      if (!HOST_RE.test(text)) return { problem: `the host name ${JSON.stringify(text)} is not a DNS name` };
      host = text;
    }
    p += length;
  }
  return { host };
}
