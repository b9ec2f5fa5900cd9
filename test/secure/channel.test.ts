import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { activeResources, delay, expectNoLeaks, sha256, startRelay, writeRandom, type Direction, type Relay, type RelayOptions } from '../helpers.js';
import { collect, openChannels, RecordTamperer } from './net.js';

const MIB = 1024 * 1024;

/** A recognisable, non-repeating-at-64-bytes plaintext: each 8-byte word is its own offset. */
function pattern(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += 8) out.writeBigUInt64BE(BigInt(i) ^ 0x5269_6450_726f_7879n, i);
  return out;
}

/** Whether any of a spread of 64-byte windows of `plain` occurs in `recorded`. */
function leaks(plain: Buffer, recorded: Buffer): boolean {
  for (let offset = 0; offset + 64 <= plain.length; offset += 4096 + 8) {
    if (recorded.includes(plain.subarray(offset, offset + 64))) return true;
  }
  return false;
}

function ended(stream: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.once('end', resolve);
    stream.once('error', reject);
  });
}

let baseline: Record<string, number>;
beforeAll(() => {
  baseline = activeResources();
});
afterAll(async () => {
  await expectNoLeaks(baseline);
});

describe.each(['socket', 'js-duplex'] as const)('secure channel over a %s', (transport) => {
  let relay: Relay | undefined;
  const through = (options: RelayOptions) => async (port: number) => {
    relay = await startRelay(port, options);
    return relay.port;
  };
  const closeRelay = async (): Promise<void> => {
    await relay?.close();
    relay = undefined;
  };

  test('the relay never sees 1 MiB of known plaintext, and the receiver gets it intact', async () => {
    const plain = pattern(MIB);
    const recorded: Record<Direction, Buffer[]> = { toTarget: [], fromTarget: [] };
    const record = (direction: Direction, chunk: Buffer): Buffer => {
      recorded[direction].push(Buffer.from(chunk));
      return chunk;
    };
    const { dialer, acceptor, dialerIdentity, acceptorIdentity } = await openChannels({ transport, via: through({ tap: record }) });
    expect(acceptor.peerRoutingId.equals(dialerIdentity.routingId)).toBe(true);
    expect(acceptor.peerPublicKey.equals(dialerIdentity.publicKey)).toBe(true);
    expect(dialer.peerPublicKey.equals(acceptorIdentity.publicKey)).toBe(true);
    const received = collect(acceptor.stream);
    dialer.stream.end(plain);
    const { data, error } = await received;
    expect(error).toBeUndefined();
    expect(data.equals(plain)).toBe(true);
    acceptor.stream.end();
    await ended(dialer.stream.resume());
    const upstream = Buffer.concat(recorded.toTarget);
    expect(upstream.length).toBeGreaterThan(MIB);
    expect(leaks(plain, upstream)).toBe(false);
    expect(leaks(plain, Buffer.concat(recorded.fromTarget))).toBe(false);
    // The same search does find the plaintext when it crosses the relay unencrypted.
    expect(leaks(plain, Buffer.concat([upstream.subarray(0, 1000), plain.subarray(5000, 9200)]))).toBe(true);
    await closeRelay();
  });

  test.each([
    ['acceptor', 'toTarget'],
    ['dialer', 'fromTarget'],
  ] as const)("a bit flipped in transit ends the %s's stream with ERR_INTEGRITY, after only a prefix of what was sent", async (receiverRole, flipDirection) => {
    const plain = pattern(4 * MIB);
    const tamperer = new RecordTamperer(flipDirection, 1024);
    const { dialer, acceptor } = await openChannels({ transport, via: through({ tap: tamperer.tap }) });
    const [sender, receiver] = receiverRole === 'acceptor' ? [dialer.stream, acceptor.stream] : [acceptor.stream, dialer.stream];
    const senderOutcome = collect(sender);
    const received = collect(receiver);
    sender.write(plain);
    const { data, error } = await received;
    expect(tamperer.flipped).toBe(1);
    expect(error).toMatchObject({ name: 'IntegrityError', code: 'ERR_INTEGRITY' });
    expect(error?.message).toMatch(/^secure channel: data from peer [0-9a-f]{32} failed authentication: it was altered in transit/);
    expect(data.length).toBeLessThan(plain.length);
    expect(data.equals(plain.subarray(0, data.length))).toBe(true);
    // The sender learns of it too, as the connection closing under it.
    expect((await senderOutcome).error).toMatchObject({ code: expect.stringMatching(/^ERR_(INTEGRITY|CONNECTION_LOST)$/) });
    await closeRelay();
  });

  test('a connection cut without the end-of-stream marker is an error, not a clean end', async () => {
    // Enough for the handshake and part of the data; the relay then sends a bare FIN.
    const { dialer, acceptor } = await openChannels({ transport, via: through({ endAfter: { direction: 'toTarget', bytes: 64 * 1024 } }) });
    dialer.stream.on('error', () => undefined);
    const received = collect(acceptor.stream);
    const plain = pattern(MIB);
    dialer.stream.end(plain);
    const { data, error } = await received;
    expect(error).toMatchObject({ code: 'ERR_CONNECTION_LOST' });
    expect(error?.message).toMatch(/cut off without its end-of-stream marker/);
    expect(data.equals(plain.subarray(0, data.length))).toBe(true);
    dialer.stream.destroy();
    await closeRelay();
  });

  test('64 MiB round trip intact, with half-close in both directions', async () => {
    const { dialer, acceptor } = await openChannels({ transport, via: through({}) });
    // The acceptor echoes, and keeps writing after the dialer has ended its side.
    acceptor.stream.pipe(acceptor.stream);
    const back = createHash('sha256');
    let backBytes = 0;
    dialer.stream.on('data', (chunk: Buffer) => {
      back.update(chunk);
      backBytes += chunk.length;
    });
    const dialerEnded = ended(dialer.stream);
    const sent = await writeRandom(dialer.stream, 64 * MIB);
    await dialerEnded;
    expect(backBytes).toBe(64 * MIB);
    expect(back.digest('hex')).toBe(sent);
    await closeRelay();
  });

  test('each side can go on writing after the other has ended', async () => {
    const { dialer, acceptor } = await openChannels({ transport });
    const atAcceptor = collect(acceptor.stream);
    dialer.stream.end('request');
    expect((await atAcceptor).data.toString()).toBe('request');
    const atDialer = collect(dialer.stream);
    acceptor.stream.write('response, ');
    await new Promise((resolve) => setTimeout(resolve, 20));
    acceptor.stream.end('written after the peer ended');
    expect((await atDialer).data.toString()).toBe('response, written after the peer ended');
    await Promise.all([dialer.stream, acceptor.stream].map((s) => new Promise((resolve) => (s.closed ? resolve(undefined) : s.once('close', resolve)))));
  });
});

test('backpressure: a reader that stops reading stops the writer, with bounded buffering', async () => {
  const { dialer, acceptor } = await openChannels({ transport: 'js-duplex' });
  acceptor.stream.pause();
  const block = pattern(64 * 1024);
  const hash = createHash('sha256');
  let accepted = 0;
  // Write as a well-behaved producer does, until 'drain' stops coming.
  for (;;) {
    hash.update(block);
    accepted += block.length;
    if (accepted > 256 * MIB) throw new Error('the writer was never stopped');
    if (dialer.stream.write(block)) continue;
    const drained = await Promise.race([new Promise<boolean>((resolve) => dialer.stream.once('drain', () => resolve(true))), delay(300).then(() => false)]);
    if (!drained) break;
  }
  // Kernel socket buffers on loopback hold a few MiB; the rest is bounded by high-water marks.
  expect(accepted).toBeLessThan(32 * MIB);
  const received = collect(acceptor.stream);
  acceptor.stream.resume();
  dialer.stream.end();
  const { data, error } = await received;
  expect(error).toBeUndefined();
  expect(data.length).toBe(accepted);
  expect(sha256(data)).toBe(hash.digest('hex'));
  acceptor.stream.end();
  await ended(dialer.stream.resume());
});
