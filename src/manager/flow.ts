import { ManagerError, Reason, VcClosedError } from '../errors.js';
import { YamuxStream, type YamuxStreamInit } from '../mux/index.js';
import { kAbort } from '../mux/internal.js';
import type { VcSession } from './vc-session.js';

/** Largest message readMsg accepts, so a peer cannot make us buffer without bound. */
export const MAX_MESSAGE_SIZE = 16 << 20;
const LENGTH_PREFIX = 4;

/**
 * A duplex byte stream to another process, multiplexed on a VC. Besides the stream API it
 * offers length-prefixed messages (`writeMsg` / `readMsg`), a 4-byte big-endian length then
 * the bytes; mixing them with plain reads on the same flow is the caller's choice to make.
 */
export class Flow extends YamuxStream {
  /** The VC this flow runs on (README: `rtt`, `ping()`, `receiveWindow`, `lastUsed`, `closed`, `remoteRoutingId`); never a way to the multiplexer or circuit beneath it. */
  readonly conn: VcSession;
  #reading: Promise<void> = Promise.resolve();
  #peerEnded = false;

  constructor(init: YamuxStreamInit, conn: VcSession) {
    super(init);
    this.conn = conn;
  }

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null) this.#peerEnded = true;
    return super.push(chunk, encoding);
  }

  /**
   * A peer that closes its VC on purpose (ERR_GOING_AWAY) after ending this flow has said all it
   * had to say: the application still reads it to the end, and the flow then closes without an
   * error, unless bytes written here were still waiting to go out.
   */
  override [kAbort](err: Error | undefined): void {
    const peerFinished = this.#peerEnded && err instanceof VcClosedError && err.reason === Reason.GoingAway && this.writableLength === 0;
    if (!peerFinished) {
      super[kAbort](err);
      return;
    }
    if (this.readableEnded) super[kAbort](undefined);
    else this.once('end', () => super[kAbort](undefined));
  }

  get localEndpoint(): string {
    return this.conn.localEndpoint;
  }

  get remoteEndpoint(): string {
    return this.conn.remoteEndpoint;
  }

  /** The peer process's raw 32-byte Ed25519 public key. */
  get remotePublicKey(): Buffer {
    return this.conn.remotePublicKey;
  }

  /** Writes the chunks as one message; resolves once the flow accepted it (respecting backpressure). */
  writeMsg(...chunks: Uint8Array[]): Promise<void> {
    let length = 0;
    for (const chunk of chunks) length += chunk.length;
    if (length > 0xffff_ffff) return Promise.reject(new ManagerError('ERR_MESSAGE_TOO_LARGE', `message of ${length} bytes exceeds the 4 GiB frame limit`));
    const prefix = Buffer.allocUnsafe(LENGTH_PREFIX);
    prefix.writeUInt32BE(length, 0);
    const parts = [prefix, ...chunks.filter((chunk) => chunk.length > 0)];
    return new Promise<void>((resolve, reject) => {
      this.cork();
      parts.forEach((part, index) => {
        // Write callbacks run in order, so the last one's says the whole message was taken.
        this.write(part, index === parts.length - 1 ? (err) => (err ? reject(err) : resolve()) : undefined);
      });
      this.uncork();
    });
  }

  /** Writes one message and then ends this side of the flow. */
  async writeMsgAndClose(...chunks: Uint8Array[]): Promise<void> {
    await this.writeMsg(...chunks);
    await new Promise<void>((resolve, reject) => {
      this.end((err?: Error | null) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Reads one message written by the peer's writeMsg. Rejects with ERR_END_OF_FLOW if the flow
   * ends first. Calls made while one is pending get the following messages, in call order.
   */
  readMsg(maxSize = MAX_MESSAGE_SIZE): Promise<Buffer> {
    // One read at a time: each waits on the flow's events, so concurrent ones would add a set of
    // listeners apiece and take each other's bytes (one's body read as another's header).
    const read = this.#reading.then(() => this.#readOneMsg(maxSize));
    this.#reading = read.then(
      () => undefined,
      () => undefined,
    );
    return read;
  }

  async #readOneMsg(maxSize: number): Promise<Buffer> {
    const header = await this.#readExactly(LENGTH_PREFIX, true);
    const length = header.readUInt32BE(0);
    if (length > maxSize) {
      this.destroy(new ManagerError('ERR_MESSAGE_TOO_LARGE', `peer sent a ${length}-byte message; the limit is ${maxSize} bytes`));
      throw this.errored;
    }
    return length === 0 ? Buffer.alloc(0) : this.#readExactly(length, false);
  }

  #readExactly(size: number, atBoundary: boolean): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const attempt = (): void => {
        const chunk = this.read(size) as Buffer | null;
        if (chunk === null) {
          if (this.readableEnded) finishEnded();
          return;
        }
        cleanup();
        if (chunk.length === size) resolve(chunk);
        else reject(new ManagerError('ERR_END_OF_FLOW', `flow ended ${size - chunk.length} bytes short of a complete message`));
      };
      const finishEnded = (): void => {
        cleanup();
        reject(new ManagerError('ERR_END_OF_FLOW', atBoundary ? 'flow ended before another message arrived' : 'flow ended in the middle of a message'));
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(err);
      };
      // A flow destroyed without an error (its manager closed) emits neither 'end' nor 'error',
      // only 'close': without this a pending readMsg would wait forever.
      const onClose = (): void => {
        cleanup();
        reject(this.errored ?? new ManagerError('ERR_END_OF_FLOW', 'flow was closed before a complete message arrived'));
      };
      const cleanup = (): void => {
        this.off('readable', attempt);
        this.off('end', finishEnded);
        this.off('error', onError);
        this.off('close', onClose);
      };
      if (this.errored) {
        reject(this.errored);
        return;
      }
      if (this.readableEnded) {
        reject(new ManagerError('ERR_END_OF_FLOW', 'flow ended before another message arrived'));
        return;
      }
      if (this.destroyed) {
        reject(new ManagerError('ERR_END_OF_FLOW', 'flow was closed before another message arrived'));
        return;
      }
      this.on('readable', attempt);
      this.on('end', finishEnded);
      this.on('error', onError);
      this.on('close', onClose);
      attempt();
    });
  }
}
