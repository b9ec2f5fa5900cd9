import type { Socket } from 'node:net';
import { once } from 'node:events';
import { defaultLogger } from '@libp2p/logger';
import { AbstractMessageStream, type SendResult } from '@libp2p/utils';
import { yamux } from '@libp2p/yamux';
import type { Stream, StreamMuxer } from '@libp2p/interface';
import type { Uint8ArrayList } from 'uint8arraylist';

/**
 * Presents a TCP socket as the libp2p MessageStream that @libp2p/yamux's muxer runs on, so that
 * implementation can serve as a wire-compatibility oracle for ours. Test-only.
 */
class SocketMessageStream extends AbstractMessageStream {
  constructor(private readonly socket: Socket, direction: 'inbound' | 'outbound') {
    super({ log: defaultLogger().forComponent(`test:libp2p-socket:${direction}`), direction });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.safeDispatchEvent('drain'));
    socket.on('end', () => this.onRemoteCloseWrite());
    socket.on('close', () => this.onTransportClosed());
    socket.on('error', (err: Error) => this.abort(err));
  }

  sendData(data: Uint8ArrayList): SendResult {
    let canSendMore = true;
    for (const buf of data) canSendMore = this.socket.write(buf);
    return { sentBytes: data.byteLength, canSendMore };
  }

  sendReset(): void {
    this.socket.resetAndDestroy();
  }

  sendPause(): void {
    this.socket.pause();
  }

  sendResume(): void {
    this.socket.resume();
  }

  async close(): Promise<void> {
    if (this.socket.closed) return;
    this.socket.end();
    await once(this.socket, 'close');
  }
}

/** The parts of @libp2p/yamux's YamuxMuxer (not exported by name) that the tests use. */
export interface Libp2pMuxer extends StreamMuxer {
  ping(): Promise<number>;
  getRTT(): number;
}

/** A @libp2p/yamux muxer on `socket`; `client` picks odd stream ids, as in our sessions. Keepalive pings run. */
export function libp2pMuxer(socket: Socket, client: boolean): Libp2pMuxer {
  const connection = new SocketMessageStream(socket, client ? 'outbound' : 'inbound');
  return yamux({ enableKeepAlive: true, keepAliveInterval: 1000 })().createStreamMuxer(connection);
}

/** Everything a libp2p stream receives until the remote closes its writable side. */
export async function libp2pReadAll(stream: Stream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray();
    chunks.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  return Buffer.concat(chunks);
}

/** Sends `data` in pieces, waiting whenever the stream asks for it to drain. */
export async function libp2pWrite(stream: Stream, data: Buffer, pieceSize = 32 * 1024): Promise<void> {
  for (let offset = 0; offset < data.length; offset += pieceSize) {
    if (!stream.send(data.subarray(offset, offset + pieceSize))) await stream.onDrain();
  }
}
