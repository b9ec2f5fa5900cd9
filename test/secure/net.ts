import { connect, createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { Identity } from '../../src/id/identity.js';
import { HEADER_SIZE, SegmentType } from '../../src/secure/framing.js';
import { secureChannel, type SecureChannel, type SecureChannelOptions } from '../../src/secure/index.js';
import { jsDuplex } from '../../bench/lib/js-duplex.js';
import { listenOnLoopback } from '../../bench/lib/listen.js';
import type { Direction, Tap } from '../helpers.js';

/** The two ends of one loopback TCP connection: [dialer's socket, acceptor's socket]. */
export async function tcpPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  const target = await listenOnLoopback(server);
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const dialer = connect(target, '127.0.0.1');
  const acceptor = await accepted;
  // Its callback would wait for this very connection to end.
  server.close();
  return [dialer, acceptor];
}

/**
 * A relay tap that flips one bit in the middle of the first sealed record carrying at least
 * `threshold` bytes in `direction`: past the handshake, whose segments are all smaller. It parses
 * the channel's segment headers (type, 24-bit length) so the flip lands inside a sealed body, and
 * so it must see a single connection from its start.
 */
export class RecordTamperer {
  /** How many bits were flipped so far. */
  flipped = 0;
  #header: number[] = [];
  #payloadLeft = 0;
  #payloadLength = 0;
  #sealed = false;
  readonly #direction: Direction;
  readonly #threshold: number;

  constructor(direction: Direction, threshold: number) {
    this.#direction = direction;
    this.#threshold = threshold;
  }

  readonly tap: Tap = (direction, chunk) => {
    if (direction === this.#direction) this.#flipIn(chunk);
    return chunk;
  };

  #flipIn(chunk: Buffer): void {
    for (let i = 0; i < chunk.length; ) {
      if (this.#payloadLeft === 0) {
        this.#header.push(chunk[i++]);
        if (this.#header.length === HEADER_SIZE) {
          this.#payloadLength = this.#payloadLeft = Buffer.from(this.#header).readUIntBE(1, 3);
          this.#sealed = this.#header[0] !== SegmentType.Handshake;
          this.#header = [];
        }
        continue;
      }
      const n = Math.min(this.#payloadLeft, chunk.length - i);
      const middle = this.#payloadLength - Math.floor(this.#payloadLength / 2);
      if (this.flipped === 0 && this.#sealed && this.#payloadLength >= this.#threshold && this.#payloadLeft >= middle && this.#payloadLeft - n < middle) {
        chunk[i + (this.#payloadLeft - middle)] ^= 0x10;
        this.flipped++;
      }
      this.#payloadLeft -= n;
      i += n;
    }
  }
}

export interface Started {
  /** Already marked handled, so a test may await them in either order. */
  dialer: Promise<SecureChannel>;
  acceptor: Promise<SecureChannel>;
  dialerIdentity: Identity;
  acceptorIdentity: Identity;
}

export interface PairOptions {
  /** Starts something (a relay) in front of the acceptor's port; the dialer connects to the port it returns. */
  via?: (acceptorPort: number) => Promise<number>;
  transport?: 'socket' | 'js-duplex';
  dialer?: Partial<SecureChannelOptions>;
  acceptor?: Partial<SecureChannelOptions>;
}

/** Starts both ends of a secure channel over a fresh loopback connection. */
export async function startChannels(options: PairOptions = {}): Promise<Started> {
  const dialerIdentity = Identity.generate();
  const acceptorIdentity = Identity.generate();
  const server = createServer();
  const port = await listenOnLoopback(server);
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const dialerSocket = connect(options.via === undefined ? port : await options.via(port), '127.0.0.1');
  const acceptorSocket = await accepted;
  server.close();
  const wrap = (socket: Socket): Duplex => (options.transport === 'js-duplex' ? jsDuplex(socket) : socket);
  const dialer = secureChannel(wrap(dialerSocket), { identity: dialerIdentity, role: 'dialer', expectedRoutingId: acceptorIdentity.routingId, ...options.dialer });
  const acceptor = secureChannel(wrap(acceptorSocket), { identity: acceptorIdentity, role: 'acceptor', ...options.acceptor });
  dialer.catch(() => undefined);
  acceptor.catch(() => undefined);
  return { dialer, acceptor, dialerIdentity, acceptorIdentity };
}

export async function openChannels(options: PairOptions = {}): Promise<{ dialer: SecureChannel; acceptor: SecureChannel; dialerIdentity: Identity; acceptorIdentity: Identity }> {
  const started = await startChannels(options);
  const [dialer, acceptor] = await Promise.all([started.dialer, started.acceptor]);
  return { ...started, dialer, acceptor };
}

/** Everything `stream` delivers up to 'end', or the error that ended it together with what came before. */
export function collect(stream: Duplex): Promise<{ data: Buffer; error?: Error }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve({ data: Buffer.concat(chunks) }));
    stream.once('error', (error) => resolve({ data: Buffer.concat(chunks), error }));
  });
}

/** The error `promise` rejects with (fails the test if it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}
