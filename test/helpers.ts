import { createHash, randomBytes } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';

/** A reusable block of random bytes; sources vary it per block so repeats cannot hide reordering. */
const BLOCK = randomBytes(1 << 20);

/**
 * Writes `total` pseudo-random bytes to `sink` honouring backpressure, and resolves to their
 * SHA-256. Each block is the shared random block with its index stamped in, so a dropped,
 * duplicated or reordered block changes the digest.
 */
export async function writeRandom(sink: Writable, total: number, blockSize = 64 * 1024, end = true): Promise<string> {
  const hash = createHash('sha256');
  let written = 0;
  let index = 0;
  while (written < total) {
    const size = Math.min(blockSize, total - written);
    const offset = (index * 7919) % (BLOCK.length - size + 1);
    const block = Buffer.from(BLOCK.subarray(offset, offset + size));
    block.writeUInt32BE(index >>> 0, 0);
    index++;
    hash.update(block);
    written += size;
    if (!sink.write(block)) {
      await new Promise<void>((resolve, reject) => {
        const settle = (err?: Error): void => {
          sink.off('drain', onDrain);
          sink.off('error', onError);
          sink.off('close', onClose);
          if (err) reject(err);
          else resolve();
        };
        const onDrain = (): void => settle();
        const onError = (err: Error): void => settle(err);
        const onClose = (): void => settle(new Error('the stream closed while writing'));
        sink.once('drain', onDrain);
        sink.once('error', onError);
        sink.once('close', onClose);
      });
    }
  }
  if (end) await new Promise<void>((resolve) => sink.end(resolve));
  return hash.digest('hex');
}

/** Reads `source` to its end; resolves to the SHA-256 and byte count of everything read. */
export async function digestStream(source: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of source) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Reads a stream fully into one buffer (for small payloads only). */
export async function readAll(source: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Polls `condition` until it holds, failing with `what` after `timeout` ms. */
export async function waitFor(condition: () => boolean, what: string, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The resources (sockets, servers, timers) the process holds now, by type; for leak checks. */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

/** Waits until the process holds no more TCP sockets, servers or timers than at `baseline`. */
export async function expectNoLeaks(baseline: Record<string, number>, timeout = 3000): Promise<void> {
  const watched = ['TCPSocketWrap', 'TCPServerWrap', 'Timeout'];
  const excess = (): string[] => {
    const now = activeResources();
    return watched.filter((type) => (now[type] ?? 0) > (baseline[type] ?? 0)).map((type) => `${type}: ${now[type]} now, ${baseline[type] ?? 0} before`);
  };
  const deadline = Date.now() + timeout;
  while (excess().length > 0) {
    if (Date.now() > deadline) throw new Error(`resources left open: ${excess().join('; ')}`);
    await delay(10);
  }
}

/** Which way a chunk crosses a relay: from the connecting side to the target, or back. */
export type Direction = 'toTarget' | 'fromTarget';

/**
 * A TCP relay to `port` on 127.0.0.1. Every chunk passes through `tap`, which may record it or
 * return a changed copy to forward, so a test can stand in for a curious or tampering network
 * (or proxy) without reaching into library internals. `cut()` resets every relayed connection,
 * as a crash or a network failure would.
 */
export async function startRelay(
  port: number,
  tap: (direction: Direction, chunk: Buffer) => Buffer = (_, chunk) => chunk,
): Promise<{ port: number; cut(): void; close(): Promise<void> }> {
  const { createServer, connect } = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((inbound) => {
    const outbound = connect({ host: '127.0.0.1', port });
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.on('data', (chunk: Buffer) => outbound.write(tap('toTarget', chunk)));
    outbound.on('data', (chunk: Buffer) => inbound.write(tap('fromTarget', chunk)));
    inbound.on('end', () => outbound.end());
    outbound.on('end', () => inbound.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as import('node:net').AddressInfo;
  const cut = (): void => {
    for (const socket of sockets) socket.resetAndDestroy();
  };
  return {
    port: address.port,
    cut,
    close: () =>
      new Promise<void>((resolve) => {
        cut();
        server.close(() => resolve());
      }),
  };
}

/** Opens a TCP connection to 127.0.0.1:`port`, resolving once connected. */
export async function socketTo(port: number): Promise<import('node:net').Socket> {
  const { connect } = await import('node:net');
  const socket = connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}
