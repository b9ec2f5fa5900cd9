import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { READ_SIZE, SocketReads } from '../../src/hop/socket-reads.js';

const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A loopback server that runs `send` on each connection, and a socket dialed to it through `reads`. */
async function dialed(send: (socket: Socket) => void | Promise<void>, reads: SocketReads): Promise<Socket> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    void send(socket);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, onread: reads.onread });
  socket.on('error', () => undefined);
  return socket;
}

const sha256 = (parts: readonly Buffer[]): string => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
};

describe('SocketReads', () => {
  it('reads a bulk transfer in large reads, and no chunk it handed on is written over by a later read', async () => {
    const payload = randomBytes(16 << 20);
    const reads = new SocketReads();
    const chunks: Buffer[] = [];
    reads.handler = (chunk) => chunks.push(chunk);
    const socket = await dialed((peer) => {
      peer.end(payload);
    }, reads);
    await once(socket, 'end');
    // Every chunk is checked only now, after all reads: one read into a buffer handed on earlier would show here.
    expect(sha256(chunks)).toBe(sha256([payload]));
    const large = chunks.filter((chunk) => chunk.length > 64 * 1024);
    expect(large.length).toBeGreaterThan(0);
    expect(Math.max(...chunks.map((chunk) => chunk.length))).toBeLessThanOrEqual(READ_SIZE);
    expect(new Set(large.map((chunk) => chunk.buffer)).size).toBe(large.length);
  });

  it('copies small reads out, so a chunk holds no more memory than its bytes, and they stay intact as the buffer is read into again', async () => {
    const messages = Array.from({ length: 50 }, (_, i) => Buffer.from(`message ${i} ${'x'.repeat(i * 20)}`));
    const reads = new SocketReads();
    const chunks: Buffer[] = [];
    reads.handler = (chunk) => chunks.push(chunk);
    const socket = await dialed(async (peer) => {
      for (const message of messages) {
        peer.write(message);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      peer.end();
    }, reads);
    await once(socket, 'end');
    expect(Buffer.concat(chunks).equals(Buffer.concat(messages))).toBe(true);
    for (const chunk of chunks) expect(chunk.buffer.byteLength).toBeLessThan(READ_SIZE / 2);
  });

  it('keeps what arrives before there is a handler, and hands it over first, in order', async () => {
    const reads = new SocketReads();
    const socket = await dialed((peer) => {
      peer.end('spoke first');
    }, reads);
    await once(socket, 'end');
    const chunks: Buffer[] = [];
    reads.handler = (chunk) => chunks.push(chunk);
    expect(Buffer.concat(chunks).toString()).toBe('spoke first');
  });
});
