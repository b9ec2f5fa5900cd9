import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { Identity } from '../../src/id/identity.js';
import { HEADER_SIZE, SegmentType } from '../../src/secure/framing.js';
import { secureChannel, type SecureChannel, type SecureChannelOptions } from '../../src/secure/index.js';
import { jsDuplex } from '../../bench/lib/js-duplex.js';

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** The two ends of one loopback TCP connection: [dialer's socket, acceptor's socket]. */
export async function tcpPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  const target = await listen(server);
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const dialer = connect(target, '127.0.0.1');
  const acceptor = await accepted;
  // Its callback would wait for this very connection to end.
  server.close();
  return [dialer, acceptor];
}

/**
 * A pass-through TCP relay (what the proxy is, as far as the channel can tell) that records every
 * byte in each direction, and can flip one bit of the dialer's traffic or cut it short.
 */
export interface Relay {
  port: number;
  /** Bytes seen from the dialer to the acceptor, and back. */
  upstream: Buffer[];
  downstream: Buffer[];
  /** How many bits were flipped so far. */
  flipped: number;
  close(): Promise<void>;
}

export interface RelayOptions {
  /** Keep the bytes that pass (off for large transfers that need no inspection). */
  record?: boolean;
  /**
   * Flip one bit in the middle of the first sealed record carrying at least this many bytes, in
   * the given direction: past the handshake, whose segments are all smaller.
   */
  flipInRecordOfAtLeast?: number;
  flipDirection?: 'upstream' | 'downstream';
  /** Forward only this many bytes from the dialer, then send a bare FIN (no close_notify). */
  cutUpstreamAfter?: number;
}

/** Parses the channel's segment headers (type, 24-bit length) so tampering lands inside a sealed body. */
class RecordTamperer {
  #header: number[] = [];
  #payloadLeft = 0;
  #payloadLength = 0;
  #sealed = false;
  #done = false;
  readonly #threshold: number;

  constructor(threshold: number) {
    this.#threshold = threshold;
  }

  /** Flips the chosen bit in place if it falls in `chunk`; returns whether it did. */
  apply(chunk: Buffer): boolean {
    let flipped = false;
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
      if (!this.#done && this.#sealed && this.#payloadLength >= this.#threshold && this.#payloadLeft >= middle && this.#payloadLeft - n < middle) {
        chunk[i + (this.#payloadLeft - middle)] ^= 0x10;
        this.#done = true;
        flipped = true;
      }
      this.#payloadLeft -= n;
      i += n;
    }
    return flipped;
  }
}

export async function startRelay(targetPort: number, options: RelayOptions = {}): Promise<Relay> {
  const sockets = new Set<Socket>();
  const relay: Relay = {
    port: 0,
    upstream: [],
    downstream: [],
    flipped: 0,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer({ allowHalfOpen: true }, (inbound) => {
    const outbound = connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const tamperer = options.flipInRecordOfAtLeast === undefined ? undefined : new RecordTamperer(options.flipInRecordOfAtLeast);
    let forwarded = 0;
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    const forward = (from: Socket, to: Socket, log: Buffer[], upstream: boolean): void => {
      from.on('data', (chunk: Buffer) => {
        if (upstream && options.cutUpstreamAfter !== undefined) {
          if (forwarded >= options.cutUpstreamAfter) return;
          chunk = chunk.subarray(0, options.cutUpstreamAfter - forwarded);
          forwarded += chunk.length;
          if (forwarded >= options.cutUpstreamAfter) {
            to.end(chunk);
            return;
          }
        }
        if (upstream === ((options.flipDirection ?? 'upstream') === 'upstream') && tamperer?.apply(chunk)) relay.flipped++;
        if (options.record) log.push(Buffer.from(chunk));
        if (!to.write(chunk)) from.pause();
      });
      to.on('drain', () => from.resume());
      from.on('end', () => to.end());
    };
    forward(inbound, outbound, relay.upstream, true);
    forward(outbound, inbound, relay.downstream, false);
  });
  relay.port = await listen(server);
  return relay;
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
  const port = await listen(server);
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
