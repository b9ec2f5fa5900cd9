import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { YamuxSession, type YamuxSessionOptions } from '../../src/mux/index.js';

export interface SocketPair {
  /** The dialing side (yamux client by convention). */
  client: net.Socket;
  /** The accepted side. */
  server: net.Socket;
}

/** Two ends of a real loopback TCP connection; the listener is closed once it has accepted. */
export async function socketPair(): Promise<SocketPair> {
  const listener = net.createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as net.AddressInfo;
  const accepted = once(listener, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  const [server] = await accepted;
  listener.close();
  client.setNoDelay(true);
  server.setNoDelay(true);
  return { client, server };
}

export interface SessionPair extends SocketPair {
  a: YamuxSession;
  b: YamuxSession;
}

/** A yamux client session `a` and server session `b` over one TCP connection. Keepalive is off unless asked for. */
export async function sessionPair(
  aOptions: Partial<YamuxSessionOptions> = {},
  bOptions: Partial<YamuxSessionOptions> = {},
): Promise<SessionPair> {
  const sockets = await socketPair();
  const a = new YamuxSession(sockets.client, { keepAliveInterval: 0, ...aOptions, client: true });
  const b = new YamuxSession(sockets.server, { keepAliveInterval: 0, ...bOptions, client: false });
  return { ...sockets, a, b };
}

/**
 * Closes both sessions gracefully and waits until both sockets are gone. A test that leaves a
 * stream half-open makes this time out instead of hiding it.
 */
export async function teardown(pair: SessionPair): Promise<Array<Error | undefined>> {
  pair.a.close();
  pair.b.close();
  const results = await Promise.all([pair.a.closed, pair.b.closed]);
  await Promise.all([pair.client, pair.server].map((s) => (s.closed ? undefined : once(s, 'close'))));
  return results;
}

/** Destroys both sessions now and waits until both sockets are gone. */
export async function destroyPair(pair: SessionPair): Promise<void> {
  pair.a.destroy();
  pair.b.destroy();
  await Promise.all([pair.a.closed, pair.b.closed]);
  await Promise.all([pair.client, pair.server].map((s) => (s.closed ? undefined : once(s, 'close'))));
}

/**
 * Reads a stream to its end. Uses 'data'/'end' rather than `for await`, because the async
 * iterator destroys the stream when it finishes, which would reset a half-closed yamux stream.
 */
export function readAll(source: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    source.on('data', (chunk: Buffer) => chunks.push(chunk));
    source.once('end', () => resolve(Buffer.concat(chunks)));
    source.once('error', reject);
  });
}

/** Resolves with the error the emitter emits next ('error'). */
export async function nextError(emitter: NodeJS.EventEmitter): Promise<Error & { code?: string }> {
  const [err] = (await once(emitter, 'error').catch((e: unknown) => [e])) as [Error & { code?: string }];
  return err;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` (at most every 10 ms) until it is true or `timeoutMs` passes. */
export async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes and waits for 'drain' when write() says so, as a well-behaved producer does. */
export async function writeWithBackpressure(sink: Writable, chunk: Buffer): Promise<void> {
  if (sink.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      sink.off('error', onError);
      resolve();
    };
    const onError = (err: Error): void => {
      sink.off('drain', onDrain);
      reject(err);
    };
    sink.once('drain', onDrain);
    sink.once('error', onError);
  });
}

/**
 * Produces `total` bytes in blocks of `blockSize`: one random block, copied per write with the
 * block's index stamped in so a lost, repeated or reordered block changes the digest.
 */
export function* randomBlocks(total: number, blockSize = 1 << 20): Generator<Buffer> {
  const base = randomBytes(blockSize);
  let index = 0;
  for (let sent = 0; sent < total; sent += blockSize) {
    const block = Buffer.allocUnsafe(Math.min(blockSize, total - sent));
    base.copy(block, 0, 0, block.length);
    if (block.length >= 4) block.writeUInt32BE(index, 0);
    index++;
    yield block;
  }
}

/** Sends `total` bytes (see randomBlocks), ends the stream, and resolves to their SHA-256. */
export async function sendRandom(sink: Writable, total: number, blockSize?: number): Promise<string> {
  const hash = createHash('sha256');
  for (const block of randomBlocks(total, blockSize)) {
    hash.update(block);
    await writeWithBackpressure(sink, block);
  }
  await new Promise<void>((resolve, reject) => sink.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return hash.digest('hex');
}

/** Reads a stream to its end (without destroying it), hashing as it goes; resolves to the SHA-256 and byte count. */
export function digest(source: Readable): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    source.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    source.once('end', () => resolve({ sha256: hash.digest('hex'), bytes }));
    source.once('error', reject);
  });
}
