import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Reason, type RidproxyError } from '../../src/errors.js';
import { MAX_DATA_FRAME, MAX_VC_WINDOW, VirtualCircuit } from '../../src/hop/circuit.js';
import { HopConnection, STARTUP_PINGS } from '../../src/hop/connection.js';
import { Identity } from '../../src/id/identity.js';
import { FrameDecoder, FrameType, HELLO_SIZE, encodeHeader, encodePreface, type Frame } from '../../src/wire/index.js';
import { delay, socketTo, waitFor } from '../helpers.js';
import { RawHandshake } from './raw-hop.js';

/** A connected TCP socket pair on 127.0.0.1. */
async function socketPair(): Promise<{ a: Socket; b: Socket; close(): Promise<void> }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const a = await socketTo((server.address() as AddressInfo).port);
  const b = await accepted;
  return {
    a,
    b,
    close: async () => {
      a.destroy();
      b.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}


describe('HopConnection', () => {
  const pairs: Array<{ close(): Promise<void> }> = [];

  afterEach(async () => {
    for (const pair of pairs.splice(0)) await pair.close();
  });

  /** Only the initiator pings when given a keepalive: a test that freezes the acceptor must not have it time out too. */
  async function established(options: { keepAliveInterval?: number; keepAliveTimeout?: number } = {}): Promise<[HopConnection, HopConnection]> {
    const pair = await socketPair();
    pairs.push(pair);
    return Promise.all([
      HopConnection.establish({ socket: pair.a, identity: Identity.generate(), initiator: true, keepAliveInterval: options.keepAliveInterval ?? 0, keepAliveTimeout: options.keepAliveTimeout }),
      HopConnection.establish({ socket: pair.b, identity: Identity.generate(), initiator: false, keepAliveInterval: 0 }),
    ]);
  }

  it('proves each side to the other and allocates VC ids by side: odd for the initiator, even for the acceptor', async () => {
    const [a, b] = await established();
    expect(a.peerRoutingId.equals(b.routingId)).toBe(true);
    expect(b.peerRoutingId.equals(a.routingId)).toBe(true);
    expect([a.allocateVci(), a.allocateVci()]).toEqual([1, 3]);
    expect([b.allocateVci(), b.allocateVci()]).toEqual([2, 4]);
  });

  /** Counts the writes a socket hands to the kernel: a corked batch is one _writev. */
  function countWrites(socket: Socket): { readonly count: number } {
    const counter = { count: 0 };
    const proto = Object.getPrototypeOf(socket) as Record<'_write' | '_writev', (...args: unknown[]) => unknown>;
    const write = proto._write;
    const writev = proto._writev;
    Object.assign(socket, {
      _write(...args: unknown[]) {
        counter.count++;
        return write.apply(socket, args);
      },
      _writev(...args: unknown[]) {
        counter.count++;
        return writev.apply(socket, args);
      },
    });
    return counter;
  }

  it("answers with preface, Hello and Proof in one write, sends a silent peer nothing, and sends its Proof with the owner's first frame", async () => {
    const pair = await socketPair();
    pairs.push(pair);
    const initiatorWrites = countWrites(pair.a);
    const responderWrites = countWrites(pair.b);
    let responderSent = 0;
    pair.a.on('data', (chunk: Buffer) => (responderSent += chunk.length));
    const responding = HopConnection.establish({ socket: pair.b, identity: Identity.generate(), initiator: false, keepAliveInterval: 0 });
    await delay(100);
    // A port scan, or a peer that has not spoken yet, is sent nothing: not even a preface.
    expect(responderSent).toBe(0);
    expect(responderWrites.count).toBe(0);
    const [a, b] = await Promise.all([
      HopConnection.establish({ socket: pair.a, identity: Identity.generate(), initiator: true, keepAliveInterval: 0 }).then((hop) => {
        hop.send(FrameType.Register, 0);
        return hop;
      }),
      responding,
    ]);
    const received: Frame[] = [];
    b.start((frame) => received.push(frame));
    a.start(() => undefined);
    await waitFor(() => received.length > 0, 'the Register');
    expect(received[0].type).toBe(FrameType.Register);
    expect(responderWrites.count).toBe(1);
    // Preface and Hello, then the Proof and the Register together.
    expect(initiatorWrites.count).toBe(2);
  });

  it('sends a GoAway that follows its preface when it refuses before answering', async () => {
    const pair = await socketPair();
    pairs.push(pair);
    const responding = HopConnection.establish({ socket: pair.b, identity: Identity.generate(), initiator: false, keepAliveInterval: 0, handshakeTimeout: 100 });
    const frames: Frame[] = [];
    let preface = false;
    const decoder = new FrameDecoder({ onPreface: () => (preface = true), onFrame: (frame) => frames.push(frame) });
    pair.a.on('data', (chunk: Buffer) => decoder.push(chunk));
    await expect(responding).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    await waitFor(() => frames.length > 0, 'the GoAway');
    expect(preface).toBe(true);
    expect(frames[0].type).toBe(FrameType.GoAway);
  });

  it('refuses a peer that reflects our own key back at us', async () => {
    const pair = await socketPair();
    pairs.push(pair);
    const identity = Identity.generate();
    const connecting = HopConnection.establish({ socket: pair.a, identity, initiator: true, keepAliveInterval: 0 });
    pair.b.write(new RawHandshake(identity, 'responder').opening());
    await expect(connecting).rejects.toMatchObject({ code: 'ERR_AUTHENTICATION', message: expect.stringContaining("this process's own public key") });
  });

  it('refuses a peer whose proof does not verify', async () => {
    const pair = await socketPair();
    pairs.push(pair);
    const connecting = HopConnection.establish({ socket: pair.a, identity: Identity.generate(), initiator: true, keepAliveInterval: 0 });
    const claimed = new RawHandshake(Identity.generate(), 'responder');
    // Signed over the right transcript, but with another key than the one claimed.
    const impostor = Object.assign(new RawHandshake(Identity.generate(), 'responder'), { hello: claimed.hello });
    const theirHello = new Promise<Buffer>((resolve) => pair.b.once('data', (chunk: Buffer) => resolve(chunk.subarray(8 + 12, 8 + 12 + HELLO_SIZE))));
    pair.b.write(claimed.opening());
    pair.b.write(impostor.proof(await theirHello));
    await expect(connecting).rejects.toMatchObject({ code: 'ERR_AUTHENTICATION' });
  });

  it('accepts nothing larger than a handshake frame before the peer is authenticated', async () => {
    const pair = await socketPair();
    pairs.push(pair);
    const connecting = HopConnection.establish({ socket: pair.a, identity: Identity.generate(), initiator: true, keepAliveInterval: 0 });
    // A GoAway announcing 64 KiB of reason: refused from its header, before any of it is buffered.
    pair.b.write(Buffer.concat([encodePreface(), encodeHeader(FrameType.GoAway, 0, 64 * 1024)]));
    await expect(connecting).rejects.toMatchObject({ code: 'ERR_FRAME_TOO_LARGE', message: expect.stringContaining('the limit is 1026 bytes') });
  });

  it('refuses a peer speaking no common protocol version', async () => {
    const pair = await socketPair();
    pairs.push(pair);
    const connecting = HopConnection.establish({ socket: pair.a, identity: Identity.generate(), initiator: true, keepAliveInterval: 0 });
    pair.b.write(encodePreface(7, 9));
    await expect(connecting).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED_VERSION' });
  });

  it('fails a peer that ends its stream in the middle of a frame with a protocol error', async () => {
    const [a, b] = await established();
    b.start(() => undefined);
    a.socket.write(encodeHeader(FrameType.Data, 1, 100));
    a.socket.end(Buffer.alloc(10));
    expect(await b.closed).toMatchObject({ code: 'ERR_PROTOCOL', message: expect.stringContaining('in the middle of a frame') });
  });

  it('declares a silent peer dead after the keepalive timeout, and measures the round trip otherwise', async () => {
    const [a, b] = await established({ keepAliveInterval: 50, keepAliveTimeout: 200 });
    a.start(() => undefined);
    b.start(() => undefined);
    await waitFor(() => a.rtt !== undefined, 'a keepalive round trip');
    // b's process freezes: it stops reading its socket, so a's pings go unanswered.
    b.socket.pause();
    const err = (await a.closed) as RidproxyError;
    expect(err).toMatchObject({ code: 'ERR_TIMEOUT', reason: Reason.Timeout });
    b.socket.resume();
  });

  /** Two started connections without keepalives, and when each Ping the initiator sent reached the acceptor's socket. */
  async function startedCountingPings(): Promise<{ a: HopConnection; pings: number[] }> {
    const pair = await socketPair();
    pairs.push(pair);
    const pings: number[] = [];
    const decoder = new FrameDecoder({ onPreface: () => undefined, onFrame: (frame) => frame.type === FrameType.Ping && pings.push(performance.now()) });
    pair.b.on('data', (chunk: Buffer) => decoder.push(chunk));
    const [a, b] = await Promise.all([
      HopConnection.establish({ socket: pair.a, identity: Identity.generate(), initiator: true, keepAliveInterval: 0 }),
      HopConnection.establish({ socket: pair.b, identity: Identity.generate(), initiator: false, keepAliveInterval: 0 }),
    ]);
    b.start(() => undefined);
    a.start(() => undefined);
    return { a, pings };
  }

  it(`measures the round trip with ${STARTUP_PINGS} pings back to back when its first VC opens, and keeps the least as its base`, async () => {
    const { a, pings } = await startedCountingPings();
    // A connection that only registers pays for no pings.
    await delay(100);
    expect(pings).toHaveLength(0);
    expect(a.baseRtt).toBeUndefined();
    a.allocateVci();
    a.allocateVci();
    await waitFor(() => pings.length >= STARTUP_PINGS, `${STARTUP_PINGS} pings`);
    await delay(200);
    // No more without a keepalive: the startup pings are a fixed few, each sent when the last came back.
    expect(pings).toHaveLength(STARTUP_PINGS);
    expect(a.baseRtt).toBeGreaterThan(0);
    expect(a.baseRtt).toBeLessThanOrEqual(a.rtt!);
  });

  it(`counts a keepalive ping already on its way as the first of the ${STARTUP_PINGS}`, async () => {
    const { a, pings } = await startedCountingPings();
    // What the keepalive timer does, without waiting for it: a ping is out when the first VC opens.
    (a as unknown as { ping(): void }).ping();
    a.allocateVci();
    await waitFor(() => pings.length >= STARTUP_PINGS, `${STARTUP_PINGS} pings`);
    await delay(200);
    expect(pings).toHaveLength(STARTUP_PINGS);
  });

  it('tells the peer why when going away, and carries that reason into the close', async () => {
    const [a, b] = await established();
    a.start(() => undefined);
    b.start(() => undefined);
    const told = new Promise<RidproxyError>((resolve) => b.once('goaway', resolve));
    a.close(Reason.GoingAway, 'maintenance');
    expect(await told).toMatchObject({ code: 'ERR_GOING_AWAY', message: expect.stringContaining('maintenance') });
    b.close();
    expect(await b.closed).toMatchObject({ code: 'ERR_GOING_AWAY' });
  });
});

describe('VirtualCircuit', () => {
  /** A VC end on a real, established hop connection, with the given credit and a 1 KiB window. */
  async function withCircuit(sendCredit: number, test: (circuit: VirtualCircuit, peer: HopConnection) => Promise<void>): Promise<void> {
    const pair = await socketPair();
    try {
      const [a, b] = await Promise.all([
        HopConnection.establish({ socket: pair.a, identity: Identity.generate(), initiator: true, keepAliveInterval: 0 }),
        HopConnection.establish({ socket: pair.b, identity: Identity.generate(), initiator: false, keepAliveInterval: 0 }),
      ]);
      const peer = Identity.generate();
      const circuit = new VirtualCircuit({ connection: a, vci: 1, sendCredit, receiveWindow: 1024, maxReceiveWindow: 1024, remoteRoutingId: peer.routingId, remotePublicKey: peer.publicKey });
      await test(circuit, b);
      circuit.destroy();
    } finally {
      await pair.close();
    }
  }

  it('lets the peer grow its window with credit, and closes the VC when credit passes the largest window', async () => {
    await withCircuit(1000, async (circuit) => {
      const failed = new Promise<RidproxyError>((resolve) => circuit.once('error', resolve));
      circuit.handleCredit(MAX_VC_WINDOW - 2000);
      expect(circuit.destroyed).toBe(false);
      circuit.handleCredit(1001);
      expect(await failed).toMatchObject({ code: 'ERR_PROTOCOL', message: expect.stringContaining(`granted ${MAX_VC_WINDOW + 1} bytes of credit, more than the largest VC window`) });
    });
  });

  it('closes the VC with a protocol reason when the peer sends beyond the credit it was given', async () => {
    await withCircuit(1024, async (circuit) => {
      const failed = new Promise<RidproxyError>((resolve) => circuit.once('error', resolve));
      circuit.handleData([Buffer.alloc(1000)], 1000);
      circuit.handleData([Buffer.alloc(100)], 100);
      expect(await failed).toMatchObject({ code: 'ERR_PROTOCOL', message: expect.stringContaining('sent 100 bytes with only 24 bytes of credit') });
    });
  });

  it('parks writes on zero credit and resumes them with the next grant, never sending past it', async () => {
    await withCircuit(1000, async (circuit) => {
      let done = false;
      circuit.write(Buffer.alloc(3000), () => {
        done = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(circuit.bytesSent).toBe(1000);
      expect(done).toBe(false);
      circuit.handleCredit(600);
      expect(circuit.bytesSent).toBe(1600);
      circuit.handleCredit(1000);
      expect(circuit.bytesSent).toBe(2600);
      circuit.handleCredit(400);
      await waitFor(() => done, 'the parked write to complete');
      expect(circuit.bytesSent).toBe(3000);
    });
  });

  it('sends writes that arrive together as one Data frame of several parts, split only by credit and frame size', async () => {
    await withCircuit(3 * MAX_DATA_FRAME + 300, async (circuit, peer) => {
      const frames: Buffer[] = [];
      peer.start((frame) => {
        if (frame.type === FrameType.Data) frames.push(Buffer.concat(frame.parts));
      });
      // A full frame of data with a layer's header and tag around it: one frame, not a full one and a sliver.
      const header = Buffer.from('twelve bytes');
      const body = randomBytes(MAX_DATA_FRAME);
      const tag = randomBytes(16);
      circuit.cork();
      for (const chunk of [header, body, tag]) circuit.write(chunk);
      circuit.uncork();
      await waitFor(() => frames.length === 1, 'one Data frame at the peer');
      expect(frames[0].equals(Buffer.concat([header, body, tag]))).toBe(true);
      // More than that is split at MAX_DATA_FRAME, so other VCs get their turns in between.
      const large = randomBytes(2 * MAX_DATA_FRAME + 100);
      circuit.write(large);
      await waitFor(() => frames.length === 3, 'two more Data frames');
      expect(frames.slice(1).map((f) => f.length)).toEqual([MAX_DATA_FRAME, MAX_DATA_FRAME + 100]);
      expect(Buffer.concat(frames.slice(1)).equals(large)).toBe(true);
      // 172 bytes of credit are left: the next batch goes out up to there, and the rest waits.
      const rest = [randomBytes(200), randomBytes(200)];
      circuit.cork();
      for (const chunk of rest) circuit.write(chunk);
      circuit.uncork();
      await waitFor(() => frames.length === 4, 'a fourth Data frame');
      expect(frames[3]).toEqual(Buffer.concat(rest).subarray(0, 172));
      circuit.handleCredit(1000);
      await waitFor(() => frames.length === 5, 'the parked remainder');
      expect(frames[4]).toEqual(Buffer.concat(rest).subarray(172));
    });
  });
});
