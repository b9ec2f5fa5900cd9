import { describe, expect, it } from 'vitest';
import { Flag, FrameType, INITIAL_STREAM_WINDOW, type YamuxStream } from '../../src/mux/index.js';
import { randomBlocks, sessionPair, sha256, teardown, waitFor, writeWithBackpressure } from './helpers.js';
import { sessionWithRawPeer, type RawPeer } from './raw-peer.js';

/*
 * read(n) with n a power of two at least the window (256 KiB by default) raises
 * readableHighWaterMark to exactly n. Node then calls _read *before* it takes the n bytes out of
 * the buffer, so credit computed there is zero; with nothing pushed afterwards Node never calls
 * _read again. The stream used to end up with a reader waiting, nothing buffered and no window
 * granted to the peer: a stall. These tests pin the window accounting down.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const FRAME = 64 * KiB;

function nextStream(session: NodeJS.EventEmitter): Promise<YamuxStream> {
  return new Promise((resolve) => session.once('stream', resolve));
}

/** Resolves with exactly `size` bytes, read with one read(size) call per 'readable', as Flow.readMsg does. */
function readExactly(stream: YamuxStream, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const chunk = stream.read(size) as Buffer | null;
      if (chunk === null) return;
      stream.off('readable', attempt);
      stream.off('error', reject);
      resolve(chunk);
    };
    stream.on('readable', attempt);
    stream.once('error', reject);
    attempt();
  });
}

/** A Ping round trip: once it is answered, the session has handled every frame sent before it and written everything it sent before the Pong. */
async function settled(peer: RawPeer, opaque: number): Promise<void> {
  peer.send(FrameType.Ping, Flag.SYN, 0, opaque);
  await peer.expectFrame((f) => f.header.type === FrameType.Ping && (f.header.flags & Flag.ACK) !== 0 && f.header.length === opaque, 30_000);
}

/** Credit (WindowUpdate deltas without flags) the session granted on `streamId` so far. */
function granted(peer: RawPeer, streamId: number): number {
  return peer.frames
    .filter((f) => f.header.type === FrameType.WindowUpdate && f.header.streamId === streamId && f.header.flags === 0)
    .reduce((sum, f) => sum + f.header.length, 0);
}

/** Sends `bytes` of stream data in 64 KiB frames. */
function sendData(peer: RawPeer, streamId: number, bytes: number, fill: number): void {
  for (let sent = 0; sent < bytes; sent += FRAME) peer.send(FrameType.Data, 0, streamId, Buffer.alloc(Math.min(FRAME, bytes - sent), fill));
}

describe('read(n) of a window-sized message', { timeout: 30_000 }, () => {
  it('read(256 KiB) that empties a full window grants the peer a new window', async () => {
    const { session, peer } = await sessionWithRawPeer();
    const accepted = nextStream(session);
    peer.send(FrameType.WindowUpdate, Flag.SYN, 2, 0);
    const stream = await accepted;
    for (let round = 0; round < 4; round++) {
      // The peer uses exactly the credit it has: the initial window, then each grant in turn.
      sendData(peer, 2, INITIAL_STREAM_WINDOW, round);
      await settled(peer, 2 * round + 1);
      expect(stream.readableLength).toBe(INITIAL_STREAM_WINDOW);
      const chunk = stream.read(INITIAL_STREAM_WINDOW) as Buffer | null;
      expect(chunk?.equals(Buffer.alloc(INITIAL_STREAM_WINDOW, round))).toBe(true);
      expect(stream.readableLength).toBe(0);
      // Nothing is buffered and the reader wants more, so the peer must have been given room again.
      await settled(peer, 2 * round + 2);
      expect(granted(peer, 2)).toBe((round + 1) * INITIAL_STREAM_WINDOW);
      expect(stream.read(INITIAL_STREAM_WINDOW)).toBeNull();
    }
    session.destroy();
    await session.closed;
  });

  for (const size of [256 * KiB, 512 * KiB, 1 * MiB]) {
    it(`100 read(${size / KiB} KiB) calls in a row on a YamuxStream pair each return one message intact`, async () => {
      const pair = await sessionPair();
      const accepted = nextStream(pair.b);
      const sender = pair.a.openStream();
      const receiver = await accepted;
      const messages = [...randomBlocks(100 * size, size)];
      const writing = (async () => {
        for (const message of messages) await writeWithBackpressure(sender, message);
        sender.end();
      })();
      for (const [index, message] of messages.entries()) {
        const chunk = await readExactly(receiver, size);
        expect(chunk.length, `message ${index}`).toBe(size);
        expect(sha256(chunk), `message ${index}`).toBe(sha256(message));
      }
      await writing;
      receiver.end();
      receiver.resume();
      await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
      await teardown(pair);
    });
  }

  it('a stream pending accept still grants nothing on read(256 KiB); markAccepted() grants it, and reads go on', async () => {
    const { session, peer } = await sessionWithRawPeer({ deferAccept: true });
    const accepted = nextStream(session);
    peer.send(FrameType.WindowUpdate, Flag.SYN, 2, 0);
    const stream = await accepted;
    sendData(peer, 2, INITIAL_STREAM_WINDOW, 1);
    await settled(peer, 1);
    expect((stream.read(INITIAL_STREAM_WINDOW) as Buffer | null)?.length).toBe(INITIAL_STREAM_WINDOW);
    expect(stream.read(INITIAL_STREAM_WINDOW)).toBeNull();
    await settled(peer, 2);
    // Pending: the window stays withheld however much is read.
    expect(granted(peer, 2)).toBe(0);
    stream.markAccepted();
    await settled(peer, 3);
    expect(granted(peer, 2)).toBe(INITIAL_STREAM_WINDOW);
    sendData(peer, 2, INITIAL_STREAM_WINDOW, 2);
    await settled(peer, 4);
    expect((stream.read(INITIAL_STREAM_WINDOW) as Buffer | null)?.equals(Buffer.alloc(INITIAL_STREAM_WINDOW, 2))).toBe(true);
    await settled(peer, 5);
    expect(granted(peer, 2)).toBe(2 * INITIAL_STREAM_WINDOW);
    session.destroy();
    await session.closed;
  });
});
