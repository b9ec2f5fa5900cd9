import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MuxError } from '../../src/errors.js';
import { PeerStreamIds } from '../../src/mux/ids.js';
import { Flag, FrameType, GoAwayCode, type YamuxStream } from '../../src/mux/index.js';
import { readAll, waitFor } from './helpers.js';
import { sessionWithRawPeer, type RawPeer } from './raw-peer.js';

/*
 * hashicorp/yamux takes stream ids atomically but sends each SYN from the goroutine that took it,
 * so SYNs reach us out of id order. Only a SYN for an id that is open, or was used before, is an
 * error; a frame for an id no SYN has used is one too, and frames for closed streams are ignored.
 * The raw peer is the server side (even ids); our session is the client.
 */

async function expectProtocolError(peer: RawPeer, closed: Promise<Error | undefined>, message: RegExp): Promise<void> {
  const err = (await closed) as MuxError;
  expect(err).toBeInstanceOf(MuxError);
  expect(err.code).toBe('ERR_MUX_PROTOCOL');
  expect(err.message).toMatch(message);
  const goAway = await peer.expectFrame((f) => f.header.type === FrameType.GoAway);
  expect(goAway.header.length).toBe(GoAwayCode.ProtocolError);
}

describe('SYNs out of id order (as hashicorp/yamux sends them)', { timeout: 30_000 }, () => {
  it('accepts streams 6, 2, 4, 12, 8 in that order, ACKs each, and carries their data', async () => {
    const { session, peer } = await sessionWithRawPeer();
    const accepted: YamuxStream[] = [];
    session.on('stream', (stream: YamuxStream) => accepted.push(stream));
    const order = [6, 2, 4, 12, 8];
    for (const id of order) peer.send(FrameType.Data, Flag.SYN | Flag.FIN, id, Buffer.from(`body of ${id}`));
    await waitFor(() => accepted.length === order.length);
    expect(accepted.map((s) => s.id)).toEqual(order);
    const bodies = await Promise.all(accepted.map((s) => readAll(s)));
    expect(bodies.map((b) => b.toString())).toEqual(order.map((id) => `body of ${id}`));
    for (const id of order) await peer.expectFrame((f) => f.header.streamId === id && (f.header.flags & Flag.ACK) !== 0);
    // 10 was skipped so far; it may still come.
    peer.send(FrameType.WindowUpdate, Flag.SYN, 10, 0);
    await waitFor(() => accepted.length === order.length + 1);
    expect(accepted.at(-1)?.id).toBe(10);
    peer.send(FrameType.Ping, Flag.SYN, 0, 7);
    await peer.expectFrame((f) => f.header.type === FrameType.Ping && f.header.length === 7);
    expect(session.isClosed).toBe(false);
    session.destroy();
  });

  it('a SYN for a lower id than the last, for a stream opened and closed, is a duplicate', async () => {
    const { session, peer } = await sessionWithRawPeer();
    session.on('stream', (stream: YamuxStream) => stream.on('error', () => {}));
    peer.send(FrameType.WindowUpdate, Flag.SYN, 8, 0);
    peer.send(FrameType.WindowUpdate, Flag.SYN, 4, 0);
    peer.send(FrameType.WindowUpdate, Flag.RST, 4, 0);
    await waitFor(() => session.streamCount === 1);
    // Late frames for the closed stream are ignored...
    peer.send(FrameType.Data, 0, 4, Buffer.from('in flight'));
    peer.send(FrameType.Ping, Flag.SYN, 0, 1);
    await peer.expectFrame((f) => f.header.type === FrameType.Ping && f.header.length === 1);
    expect(session.isClosed).toBe(false);
    // ...but opening it again is not allowed.
    peer.send(FrameType.WindowUpdate, Flag.SYN, 4, 0);
    await expectProtocolError(peer, session.closed, /stream 4 again: that id was already used/);
  });

  it('a frame without SYN for an id skipped so far (below the highest) is for a stream never opened', async () => {
    const { session, peer } = await sessionWithRawPeer();
    session.on('stream', (stream: YamuxStream) => stream.on('error', () => {}));
    peer.send(FrameType.WindowUpdate, Flag.SYN, 8, 0);
    peer.send(FrameType.WindowUpdate, 0, 6, 1000);
    await expectProtocolError(peer, session.closed, /frame for stream 6, which was never opened/);
  });

  it('a frame for an id above every SYN so far is for a stream never opened', async () => {
    const { session, peer } = await sessionWithRawPeer();
    session.on('stream', (stream: YamuxStream) => stream.on('error', () => {}));
    peer.send(FrameType.WindowUpdate, Flag.SYN, 2, 0);
    peer.send(FrameType.Data, 0, 10, Buffer.from('who?'));
    await expectProtocolError(peer, session.closed, /stream 10, which was never opened/);
  });

  it('a refused SYN (no listener) still uses its id', async () => {
    const { session, peer } = await sessionWithRawPeer();
    peer.send(FrameType.WindowUpdate, Flag.SYN, 6, 0);
    await peer.expectFrame((f) => f.header.streamId === 6 && (f.header.flags & Flag.RST) !== 0);
    peer.send(FrameType.WindowUpdate, Flag.SYN, 6, 0);
    await expectProtocolError(peer, session.closed, /stream 6 again/);
  });
});

describe('PeerStreamIds: which peer ids were used, in bounded memory', () => {
  it('any arrival order of the ids is accepted once, and only once', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }).chain((n) => fc.shuffledSubarray(Array.from({ length: n }, (_, i) => 1 + 2 * i), { minLength: n })),
        (ids) => {
          const tracker = new PeerStreamIds(1, 1024);
          for (const id of ids) expect(tracker.open(id)).toBe(true);
          for (const id of ids) {
            expect(tracker.wasOpened(id)).toBe(true);
            expect(tracker.open(id)).toBe(false);
          }
          expect(tracker.gapCount).toBe(0);
          expect(tracker.wasOpened(1 + 2 * ids.length)).toBe(false);
        },
      ),
    );
  });

  it('keeps at most maxGaps skipped ids: the oldest are given up on and count as used', () => {
    const tracker = new PeerStreamIds(2, 4);
    expect(tracker.open(20)).toBe(true);
    // 2..10 were given up on at once, 12..18 are remembered.
    expect(tracker.gapCount).toBe(4);
    expect(tracker.wasOpened(10)).toBe(true);
    expect(tracker.open(10)).toBe(false);
    expect(tracker.wasOpened(12)).toBe(false);
    expect(tracker.open(14)).toBe(true);
    expect(tracker.open(26)).toBe(true);
    // 22 and 24 join the gaps, so 12 (the oldest) is given up on.
    expect(tracker.gapCount).toBe(4);
    expect(tracker.wasOpened(12)).toBe(true);
    expect([16, 18, 22, 24].every((id) => !tracker.wasOpened(id))).toBe(true);
    expect(tracker.wasOpened(14)).toBe(true);
    expect(tracker.wasOpened(28)).toBe(false);
  });

  it('a jump to the last id costs at most maxGaps steps and entries', () => {
    const tracker = new PeerStreamIds(2, 1024);
    const start = performance.now();
    expect(tracker.open(0xffff_fffe)).toBe(true);
    expect(performance.now() - start).toBeLessThan(100);
    expect(tracker.gapCount).toBe(1024);
    expect(tracker.wasOpened(0xffff_fffe - 2)).toBe(false);
    expect(tracker.wasOpened(0xffff_fffe - 2 * 1025)).toBe(true);
  });
});
