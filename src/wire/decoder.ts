import { InvalidArgumentError, ProtocolError } from '../errors.js';
import { DEFAULT_MAX_PAYLOAD, FrameType, HEADER_SIZE, PREFACE_MAGIC, PREFACE_SIZE, PROTOCOL_VERSION, negotiateVersion } from './messages.js';
import { FRAME_MAX_PAYLOAD, FRAME_MIN_PAYLOAD, FRAME_SCOPE, SCOPE_CONNECTION, SCOPE_UNKNOWN, headerProblem } from './rules.js';

export interface Frame {
  type: FrameType;
  /** Always 0 in version 1. */
  flags: number;
  /** VC id; 0 for connection-level frames. */
  vci: number;
  /** Payload bytes: the sum of the lengths of `parts`. */
  length: number;
  /**
   * The payload as views into the pushed chunks, in order: one view when it arrived within one
   * chunk, one per chunk when it straddled several, none when empty. Never a copy.
   */
  parts: Buffer[];
}

export interface PrefaceInfo {
  minVersion: number;
  maxVersion: number;
  /** The version both sides will speak: the highest in both ranges. */
  version: number;
}

export interface FrameDecoderOptions {
  /** Largest payload accepted; a larger announced length fails before any of it is buffered. */
  maxPayload?: number;
  /** False for a stream whose preface was already consumed (or that has none). */
  expectPreface?: boolean;
  onPreface(preface: PrefaceInfo): void;
  onFrame(frame: Frame): void;
}

const EMPTY = Buffer.alloc(0);
const LOCAL_VERSIONS = { minVersion: PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION };

/** The payload as one buffer: a view when it arrived in one piece, else a copy (fine for control frames). */
export function payloadOf(frame: Frame): Buffer {
  const { parts } = frame;
  if (parts.length === 1) return parts[0];
  if (parts.length === 0) return EMPTY;
  return Buffer.concat(parts, frame.length);
}

function checkMaxPayload(maxPayload: number): number {
  if (!Number.isInteger(maxPayload) || maxPayload < 0 || maxPayload > 0xffffffff) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `maxPayload must be an integer in 0-4294967295, got ${maxPayload}`);
  }
  return maxPayload;
}

const PREFACE = 0;
const HEADER = 1;
const PAYLOAD = 2;
const DEAD = 3;

/**
 * Incremental decoder for one direction of a hop connection. Feed it socket chunks in order;
 * it calls onPreface once, then onFrame per frame, synchronously from push(). Header bytes split
 * across chunks are gathered in a 12-byte scratch buffer; payloads are never copied.
 *
 * The first violation (or exception from a callback) is thrown from push() and kills the decoder:
 * later pushes throw the same error, since the stream position is lost. Callbacks must not push.
 */
export class FrameDecoder {
  #maxPayload: number;
  readonly #onPreface: (preface: PrefaceInfo) => void;
  readonly #onFrame: (frame: Frame) => void;
  #state: number;
  #error: unknown;
  /** Bytes of a preface or header that arrived split; `#have` of them are filled. */
  readonly #scratch = Buffer.allocUnsafe(HEADER_SIZE);
  #have = 0;
  // The frame whose payload is being collected.
  #type: FrameType = FrameType.Data;
  #vci = 0;
  #length = 0;
  #remaining = 0;
  #parts: Buffer[] = [];

  constructor(options: FrameDecoderOptions) {
    this.#maxPayload = checkMaxPayload(options.maxPayload ?? DEFAULT_MAX_PAYLOAD);
    this.#onPreface = options.onPreface;
    this.#onFrame = options.onFrame;
    this.#state = options.expectPreface === false ? HEADER : PREFACE;
  }

  /**
   * Changes the payload limit for frames whose header has not arrived yet: the hop handshake
   * accepts only handshake-sized frames until the peer is authenticated, then the full limit.
   */
  set maxPayload(value: number) {
    this.#maxPayload = checkMaxPayload(value);
  }

  /** Bytes held for an incomplete preface, header or payload. */
  get bufferedBytes(): number {
    return this.#state === PAYLOAD ? this.#length - this.#remaining : this.#have;
  }

  /** True between frames: the stream may end here without cutting a preface, header or payload short. */
  get atBoundary(): boolean {
    return this.#state !== PAYLOAD && this.#have === 0;
  }

  push(chunk: Buffer): void {
    if (this.#state === DEAD) throw this.#error;
    try {
      this.#consume(chunk);
    } catch (err) {
      this.#state = DEAD;
      this.#error = err;
      this.#parts = [];
      this.#have = 0;
      throw err;
    }
  }

  #consume(chunk: Buffer): void {
    const len = chunk.length;
    let off = 0;
    while (off < len) {
      switch (this.#state) {
        case PAYLOAD: {
          const avail = len - off;
          if (avail >= this.#remaining) {
            const end = off + this.#remaining;
            this.#parts.push(off === 0 && end === len ? chunk : chunk.subarray(off, end));
            off = end;
            this.#remaining = 0;
            this.#emit();
          } else {
            this.#parts.push(off === 0 ? chunk : chunk.subarray(off));
            this.#remaining -= avail;
            off = len;
          }
          break;
        }
        case HEADER:
          if (this.#have === 0 && len - off >= HEADER_SIZE) {
            this.#header(chunk, off);
            off += HEADER_SIZE;
          } else {
            const n = Math.min(HEADER_SIZE - this.#have, len - off);
            chunk.copy(this.#scratch, this.#have, off, off + n);
            this.#have += n;
            off += n;
            if (this.#have === HEADER_SIZE) {
              this.#have = 0;
              this.#header(this.#scratch, 0);
            }
          }
          break;
        case PREFACE: {
          const n = Math.min(PREFACE_SIZE - this.#have, len - off);
          chunk.copy(this.#scratch, this.#have, off, off + n);
          this.#have += n;
          off += n;
          this.#preface();
          break;
        }
      }
    }
  }

  #preface(): void {
    const s = this.#scratch;
    // Check the magic as soon as any of it is here, so a stray client that sends a few bytes and
    // waits is told at once.
    const got = Math.min(this.#have, PREFACE_MAGIC.length);
    if (s.compare(PREFACE_MAGIC, 0, got, 0, got) !== 0) {
      throw new ProtocolError('ERR_BAD_PREFACE', `not a ridproxy peer (expected preface "RIDP", got ${showBytes(s.subarray(0, got))}${guessProtocol(s.subarray(0, got))})`);
    }
    if (this.#have < PREFACE_SIZE) return;
    this.#have = 0;
    const minVersion = s.readUInt16BE(4);
    const maxVersion = s.readUInt16BE(6);
    if (minVersion === 0 || minVersion > maxVersion) {
      throw new ProtocolError('ERR_BAD_PREFACE', `bad ridproxy preface: version range ${minVersion}-${maxVersion} is empty or starts at 0`);
    }
    const version = negotiateVersion(LOCAL_VERSIONS, { minVersion, maxVersion });
    this.#state = HEADER;
    this.#onPreface({ minVersion, maxVersion, version });
  }

  #header(b: Buffer, o: number): void {
    const type = b[o];
    const flags = b[o + 1];
    const reserved = (b[o + 2] << 8) | b[o + 3];
    const vci = b.readUInt32BE(o + 4);
    const length = b.readUInt32BE(o + 8);
    const scope = FRAME_SCOPE[type];
    if (
      scope === SCOPE_UNKNOWN ||
      flags !== 0 ||
      reserved !== 0 ||
      (scope === SCOPE_CONNECTION) !== (vci === 0) ||
      length > this.#maxPayload ||
      length < FRAME_MIN_PAYLOAD[type] ||
      length > FRAME_MAX_PAYLOAD[type]
    ) {
      this.#reject(type, flags, reserved, vci, length);
    }
    this.#type = type;
    this.#vci = vci;
    this.#length = length;
    if (length === 0) {
      this.#emit();
    } else {
      this.#remaining = length;
      this.#state = PAYLOAD;
    }
  }

  #reject(type: number, flags: number, reserved: number, vci: number, length: number): never {
    if (FRAME_SCOPE[type] !== SCOPE_UNKNOWN && length > this.#maxPayload) {
      throw new ProtocolError(
        'ERR_FRAME_TOO_LARGE',
        `${FrameType[type]} frame announces a ${length}-byte payload; the limit is ${this.#maxPayload} bytes`,
      );
    }
    throw new ProtocolError('ERR_PROTOCOL', headerProblem(type, flags, reserved, vci, length) ?? 'invalid frame header');
  }

  #emit(): void {
    const frame: Frame = { type: this.#type, flags: 0, vci: this.#vci, length: this.#length, parts: this.#parts };
    this.#parts = [];
    this.#state = HEADER;
    // Credit is the one payload checked here: a zero grant is a protocol error whatever the
    // receiver then does with it.
    if (frame.type === FrameType.Credit && payloadOf(frame).readUInt32BE(0) === 0) {
      throw new ProtocolError('ERR_PROTOCOL', `Credit frame on vci ${frame.vci} grants 0 bytes; a grant must be greater than 0`);
    }
    this.#onFrame(frame);
  }
}

/** Bytes as a quoted string, printable ASCII as is and the rest as \xNN. */
function showBytes(b: Buffer): string {
  let s = '"';
  for (const c of b) {
    if (c === 0x22 || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
    else if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return `${s}"`;
}

/** A hint at what did connect, for the common mistakes of pointing a browser or TLS client at a proxy. */
function guessProtocol(b: Buffer): string {
  const text = b.toString('latin1');
  if (/^(GET |POST|PUT |HEAD|DELE|OPTI|PATC|CONN|PRI )/.test(text)) return '; looks like an HTTP client';
  if (b.length >= 2 && b[0] === 0x16 && b[1] === 0x03) return '; looks like a TLS client';
  if (text.startsWith('SSH-')) return '; looks like an SSH client';
  return '';
}
