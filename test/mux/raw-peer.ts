import type { Socket } from 'node:net';
import { FrameParser, FrameType, YamuxSession, encodeHeader, type FrameHeader, type YamuxSessionOptions } from '../../src/mux/index.js';
import { socketPair, waitFor } from './helpers.js';

export interface ReceivedFrame {
  header: FrameHeader;
  body: Buffer;
}

/**
 * A hand-driven yamux peer on a real TCP socket: it writes exactly the frames a test gives it
 * and records every frame our session sends, so tests can break the protocol on purpose.
 */
export class RawPeer {
  readonly frames: ReceivedFrame[] = [];
  private body: Buffer[] = [];

  constructor(readonly socket: Socket) {
    const parser = new FrameParser({
      frame: (header) => {
        if (header.type !== FrameType.Data) this.frames.push({ header, body: Buffer.alloc(0) });
      },
      data: (piece) => this.body.push(Buffer.from(piece)),
      dataEnd: (header) => {
        this.frames.push({ header, body: Buffer.concat(this.body) });
        this.body = [];
      },
      error: (err) => {
        throw err;
      },
    });
    socket.on('data', (chunk: Buffer) => parser.push(chunk));
    socket.on('error', () => {});
  }

  send(type: FrameType, flags: number, streamId: number, lengthOrBody: number | Buffer): void {
    if (typeof lengthOrBody === 'number') {
      this.socket.write(encodeHeader(type, flags, streamId, lengthOrBody));
    } else {
      this.socket.write(Buffer.concat([encodeHeader(type, flags, streamId, lengthOrBody.length), lengthOrBody]));
    }
  }

  /** Waits until a received frame matches, and returns it. */
  async expectFrame(match: (frame: ReceivedFrame) => boolean, timeoutMs = 5000): Promise<ReceivedFrame> {
    await waitFor(() => this.frames.some(match), timeoutMs);
    return this.frames.find(match) as ReceivedFrame;
  }

  /** Data bytes received on `streamId` so far. */
  dataBytes(streamId: number): number {
    return this.frames.reduce((n, f) => n + (f.header.type === FrameType.Data && f.header.streamId === streamId ? f.body.length : 0), 0);
  }
}

/** Our session as the client on one end of a TCP connection, a RawPeer (the server side) on the other. */
export async function sessionWithRawPeer(
  options: Partial<YamuxSessionOptions> = {},
): Promise<{ session: YamuxSession; peer: RawPeer; transport: Socket }> {
  const { client, server } = await socketPair();
  const session = new YamuxSession(client, { keepAliveInterval: 0, ...options, client: true });
  return { session, peer: new RawPeer(server), transport: client };
}
