import type { OnReadOpts } from 'node:net';

/**
 * Largest read from a hop socket this process dials: four times libuv's 64 KiB, so a busy
 * connection's bytes come in a quarter of the reads, each with its own callback, Buffer and
 * trip through the frame decoder (bench/RESULTS.md, "Reads of 256 KiB on dialed hop sockets").
 */
export const READ_SIZE = 256 * 1024;

/**
 * A read shorter than this is copied out and the buffer read into again. A chunk is handed on
 * as a view of its buffer and keeps all of it alive while any frame cut from it is queued, so
 * handing over only reads of at least half a buffer keeps what is held to at most twice the
 * bytes received, as Node's own reads (which it trims to their length) hold once.
 */
const HAND_OVER_FROM = READ_SIZE / 2;

/**
 * The reads of a dialed socket, made into buffers of READ_SIZE (`net.connect({ onread:
 * reads.onread })`) instead of Node's 64 KiB ones. Such a socket emits no 'data': its bytes
 * reach `handler`, in order. Nothing here pauses the socket: a hop connection never does, its
 * VCs' credit bounds what it receives.
 */
export class SocketReads {
  #buffer = Buffer.allocUnsafe(READ_SIZE);
  #handler: ((chunk: Buffer) => void) | undefined;
  /** What came before there was a handler (a peer that speaks first), in order. */
  #early: Buffer[] = [];

  /** Where the bytes go from now on; any that came before it go there first. */
  set handler(handler: (chunk: Buffer) => void) {
    this.#handler = handler;
    const early = this.#early;
    this.#early = [];
    for (const chunk of early) handler(chunk);
  }
  readonly onread: OnReadOpts = {
    buffer: () => this.#buffer,
    callback: (length: number, buffer: Uint8Array): boolean => {
      const read = buffer as Buffer;
      let chunk: Buffer;
      if (length < HAND_OVER_FROM) {
        chunk = Buffer.from(read.subarray(0, length));
      } else {
        chunk = read.subarray(0, length);
        this.#buffer = Buffer.allocUnsafe(READ_SIZE);
      }
      if (this.#handler === undefined) this.#early.push(chunk);
      else this.#handler(chunk);
      return true;
    },
  };
}
