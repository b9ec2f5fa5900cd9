import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect, createServer, Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { listenOnLoopback } from '../bench/lib/listen.js';

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

/**
 * digestStream for a Duplex whose own side stays open after its peer ended: reads with 'data'
 * events, since a finished `for await` destroys the stream (a flow would be reset).
 */
export function digestUntilEnd(source: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  source.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  return new Promise((resolve, reject) => {
    source.once('end', () => resolve({ sha256: hash.digest('hex'), bytes }));
    source.once('error', reject);
  });
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
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The TCP sockets still open, by their addresses and state, so a leak report says which. */
function describeSockets(): string {
  const sockets = activeHandles().filter((h): h is Socket => h instanceof Socket);
  if (sockets.length === 0) return '';
  const describe = (s: Socket): string =>
    `${s.localAddress}:${s.localPort} -> ${s.remoteAddress}:${s.remotePort} (${s.readyState}, readable ${s.readable}, writable ${s.writable}, pending ${s.pending})`;
  return `; sockets: ${sockets.map(describe).join(', ')}`;
}

/** Every .ts file below `dir`, at any depth. */
export function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/**
 * The resources (sockets, servers, timers) the process holds now, by type; for leak checks. A
 * socket already destroyed is not counted: its handle is Node's to release (on a loaded
 * machine that has been seen to take longer than any check waits), not one the code forgot.
 */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  const released = activeHandles().filter((h) => h instanceof Socket && h.destroyed).length;
  if (counts.TCPSocketWrap !== undefined) counts.TCPSocketWrap = Math.max(0, counts.TCPSocketWrap - released);
  return counts;
}

function activeHandles(): unknown[] {
  return (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
}

/**
 * Waits until the process holds no more TCP sockets, servers or timers than at `baseline`. A
 * leak stays forever, so waiting up to 10 s costs nothing when all is well and keeps a loaded
 * machine, where a reset socket can take seconds to be reaped, from failing the check.
 */
export async function expectNoLeaks(baseline: Record<string, number>, timeout = 10_000): Promise<void> {
  const watched = ['TCPSocketWrap', 'TCPServerWrap', 'Timeout'];
  const excess = (): string[] => {
    const now = activeResources();
    return watched.filter((type) => (now[type] ?? 0) > (baseline[type] ?? 0)).map((type) => `${type}: ${now[type]} now, ${baseline[type] ?? 0} before`);
  };
  const deadline = Date.now() + timeout;
  while (excess().length > 0) {
    if (Date.now() > deadline) throw new Error(`resources left open: ${excess().join('; ')}${describeSockets()}`);
    await delay(10);
  }
}

/** Which way a chunk crosses a relay: from the connecting side to the target, or back. */
export type Direction = 'toTarget' | 'fromTarget';

/** Sees each chunk a relay passes on, and returns what to forward: the chunk itself or a changed copy. */
export type Tap = (direction: Direction, chunk: Buffer) => Buffer;

export interface RelayOptions {
  /** Records or tampers with the traffic, as a curious or hostile network (or proxy) would. */
  tap?: Tap;
  /** Forward only this many bytes in one direction, then a bare FIN: a stream cut short, not reset. */
  endAfter?: { direction: Direction; bytes: number };
  /**
   * Forward this many bytes in one direction, then, once the sender goes past them (or ends),
   * inflict `fault` on the connection: a network or peer failing at that exact moment.
   */
  faultAfter?: { direction: Direction; bytes: number; fault: Fault; onFault?: (sockets: { inbound: Socket; outbound: Socket }) => void };
}

/**
 * What a relay does to a connection at its fault point, toward the side that stops hearing:
 * reset both ends; half-close (FIN) and keep passing the other direction; stall (pass nothing
 * more, keep the connection open); or send one random byte and then reset.
 */
export type Fault = 'reset' | 'halfClose' | 'stall' | 'garbage';

export interface Relay {
  port: number;
  /** Resets every relayed connection, as a crash or a network failure would. */
  cut(): void;
  /**
   * Resets every relayed connection toward the client only, and keeps the target's side open and
   * unanswered: a network cut the target has not noticed yet. What the target still sends on
   * those connections goes to `heard`.
   */
  abandon(heard?: (chunk: Buffer) => void): void;
  close(): Promise<void>;
}

/**
 * A TCP relay to `port` on 127.0.0.1, so a test can stand between two ends without reaching into
 * library internals. Like a real proxy, it passes each side's end on to the other while the
 * other direction keeps flowing, and it slows a writer down to its reader's pace rather than
 * buffering without bound.
 */
export async function startRelay(port: number, { tap = (_, chunk) => chunk, endAfter, faultAfter }: RelayOptions = {}): Promise<Relay> {
  const sockets = new Set<Socket>();
  const pairs = new Set<{ inbound: Socket; outbound: Socket; held: Set<Socket> }>();
  /** Client sides reset by abandon(), and where what their targets still send goes. */
  const abandoned = new Map<Socket, (chunk: Buffer) => void>();
  /** `held` is a stalled connection's receiving side: nothing its peer does may close it. */
  const forward = (from: Socket, to: Socket, direction: Direction, held: Set<Socket>): void => {
    let allowance = endAfter?.direction === direction ? endAfter.bytes : Infinity;
    const fault = faultAfter?.direction === direction ? faultAfter : undefined;
    let beforeFault = fault?.bytes ?? Infinity;
    let faulted = false;
    const inflict = (): void => {
      faulted = true;
      from.resume();
      fault!.onFault?.({ inbound: direction === 'toTarget' ? from : to, outbound: direction === 'toTarget' ? to : from });
      if (fault!.fault === 'reset') {
        to.resetAndDestroy();
        from.resetAndDestroy();
      } else if (fault!.fault === 'garbage') {
        to.write(randomBytes(1), () => {
          to.resetAndDestroy();
          from.resetAndDestroy();
        });
      } else if (fault!.fault === 'halfClose') {
        to.end();
      } else {
        held.add(to);
      }
    };
    from.on('data', (chunk: Buffer) => {
      const heard = abandoned.get(to);
      if (heard) return heard(chunk);
      // What the sender writes after the FIN (or the fault) is lost, as on a connection cut short.
      if (allowance === 0 || faulted) return;
      const passing = chunk.subarray(0, Math.min(allowance, beforeFault));
      allowance -= passing.length;
      beforeFault -= passing.length;
      if (allowance === 0) to.end(tap(direction, passing));
      else if (passing.length > 0 && !to.write(tap(direction, passing))) from.pause();
      // The fault waits for the byte after its point, so the target has handled what came before.
      if (passing.length < chunk.length && beforeFault === 0) inflict();
    });
    to.on('drain', () => from.resume());
    from.on('end', () => {
      if (beforeFault === 0 && !faulted) inflict();
      if (!faulted) to.end();
    });
  };
  const server = createServer({ allowHalfOpen: true }, (inbound) => {
    const outbound = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const held = new Set<Socket>();
    const pair = { inbound, outbound, held };
    pairs.add(pair);
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('close', () => {
        sockets.delete(socket);
        if (socket === outbound) pairs.delete(pair);
      });
      socket.on('error', () => {
        for (const end of [inbound, outbound]) if (end === socket || !held.has(end)) end.destroy();
      });
    }
    forward(inbound, outbound, 'toTarget', held);
    forward(outbound, inbound, 'fromTarget', held);
  });
  const relayPort = await listenOnLoopback(server);
  const cut = (): void => {
    // resetAndDestroy() on a socket still connecting waits for the connection to be made before
    // it lets go of the handle, which a loaded machine can leave pending for good: drop those now.
    for (const socket of sockets) {
      if (socket.pending) socket.destroy();
      else socket.resetAndDestroy();
    }
  };
  return {
    port: relayPort,
    cut,
    abandon: (heard = () => undefined) => {
      for (const { inbound, outbound, held } of pairs) {
        if (inbound.destroyed) continue;
        held.add(outbound);
        abandoned.set(inbound, heard);
        inbound.resetAndDestroy();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        cut();
        server.close(() => resolve());
      }),
  };
}

/** Opens a TCP connection to 127.0.0.1:`port`, resolving once connected. */
export async function socketTo(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

/** A `lookup` for clients that take one (ws, http): every name resolves to 127.0.0.1, so a test can use real host names with no DNS. */
export const loopbackLookup = (_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void): void => {
  if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
  else callback(null, '127.0.0.1', 4);
};
