import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Flag, FrameType, INITIAL_STREAM_WINDOW, type YamuxStream } from '../../src/mux/index.js';
import { nextError, sessionPair, teardown, waitFor } from './helpers.js';
import { sessionWithRawPeer, type RawPeer } from './raw-peer.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const FRAME = 64 * KiB;

/** heapUsed + arrayBuffers after a full collection: what the process really holds. */
function heldAfterGc(): { heap: number; arrayBuffers: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('these tests measure memory and need node --expose-gc (vitest.config.ts sets it)');
  gc();
  gc();
  const usage = process.memoryUsage();
  return { heap: usage.heapUsed, arrayBuffers: usage.arrayBuffers };
}

/** Writes to the raw peer's socket, waiting for 'drain' so the sender does not queue 100 MiB in this process. */
async function sendFrame(peer: RawPeer, type: FrameType, flags: number, streamId: number, body: Buffer | number): Promise<void> {
  const socket = peer.socket;
  const header = Buffer.alloc(12);
  header[1] = type;
  header.writeUInt16BE(flags, 2);
  header.writeUInt32BE(streamId, 4);
  header.writeUInt32BE(typeof body === 'number' ? body : body.length, 8);
  socket.write(header);
  if (typeof body !== 'number' && !socket.write(body)) await once(socket, 'drain');
}

/** A Ping round trip from the raw peer: once it is answered, our session has handled every frame sent before it. */
async function settled(peer: RawPeer, opaque: number): Promise<void> {
  await sendFrame(peer, FrameType.Ping, Flag.SYN, 0, opaque);
  await peer.expectFrame((f) => f.header.type === FrameType.Ping && (f.header.flags & Flag.ACK) !== 0 && f.header.length === opaque, 30_000);
}

/** The body of frame `index` of stream `id`: a fixed pattern with both stamped in, so a misrouted frame changes the digest. */
function frameBody(id: number, index: number): Buffer {
  const body = Buffer.alloc(FRAME, id & 0xff);
  body.writeUInt32BE(id, 0);
  body.writeUInt32BE(index, 4);
  return body;
}

describe('streams waiting for accept (deferAccept)', { timeout: 60_000 }, () => {
  it('400 unaccepted streams sent 256 KiB each: the receiver holds under 16 MiB, resets the excess, and the rest deliver intact once accepted', async () => {
    const { session, peer } = await sessionWithRawPeer({ deferAccept: true });
    const open = new Map<number, YamuxStream>();
    const resetCodes = new Map<string, number>();
    session.on('stream', (stream: YamuxStream) => {
      open.set(stream.id, stream);
      stream.on('error', (err: Error & { code?: string }) => resetCodes.set(err.code ?? '?', (resetCodes.get(err.code ?? '?') ?? 0) + 1));
      // Only the streams still waiting are kept, so what the measurement sees is what the session holds.
      stream.once('close', () => open.delete(stream.id));
    });
    const before = heldAfterGc();

    const digests = new Map<number, string>();
    for (let n = 0; n < 400; n++) {
      const id = 2 + 2 * n;
      const hash = createHash('sha256');
      await sendFrame(peer, FrameType.WindowUpdate, Flag.SYN, id, 0);
      for (let index = 0; index < INITIAL_STREAM_WINDOW / FRAME; index++) {
        const body = frameBody(id, index);
        hash.update(body);
        await sendFrame(peer, FrameType.Data, 0, id, body);
      }
      digests.set(id, hash.digest('hex'));
    }
    await settled(peer, 1);
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));

    const after = heldAfterGc();
    const grown = after.heap - before.heap + (after.arrayBuffers - before.arrayBuffers);
    const resets = peer.frames.filter((f) => f.header.type === FrameType.WindowUpdate && f.header.flags & Flag.RST).length;
    console.log(
      `400 unaccepted streams x 256 KiB: session charges ${session.pendingAcceptBytes} bytes to ${session.pendingAcceptStreams} pending streams; ` +
        `heap +${((after.heap - before.heap) / MiB).toFixed(2)} MiB, arrayBuffers +${((after.arrayBuffers - before.arrayBuffers) / MiB).toFixed(2)} MiB; ${resets} streams reset`,
    );
    expect(session.pendingAcceptBytes).toBeLessThanOrEqual(4 * MiB);
    expect(grown).toBeLessThan(16 * MiB);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(16 * MiB);
    expect(resets).toBeGreaterThan(300);
    expect(session.pendingAcceptStreams).toBe(open.size);
    expect(session.pendingAcceptStreams + resets).toBe(400);
    expect(session.pendingAcceptStreams).toBeGreaterThan(0);
    expect([...resetCodes.keys()]).toEqual(['ERR_STREAM_RESET']);
    // A pending stream is held to the initial window: nothing was granted beyond it.
    expect(peer.frames.some((f) => f.header.type === FrameType.WindowUpdate && f.header.flags === 0)).toBe(false);

    for (const [id, stream] of open) {
      stream.markAccepted();
      const hash = createHash('sha256');
      let got = 0;
      await new Promise<void>((resolve) => {
        const onData = (chunk: Buffer): void => {
          hash.update(chunk);
          got += chunk.length;
          if (got < INITIAL_STREAM_WINDOW) return;
          stream.off('data', onData);
          resolve();
        };
        stream.on('data', onData);
      });
      expect(got).toBe(INITIAL_STREAM_WINDOW);
      expect(hash.digest('hex')).toBe(digests.get(id));
      // Accepted and read, it returns credit as any stream does.
      await peer.expectFrame((f) => f.header.type === FrameType.WindowUpdate && f.header.streamId === id && f.header.flags === 0 && f.header.length >= INITIAL_STREAM_WINDOW / 2);
    }
    expect(session.pendingAcceptStreams).toBe(0);
    expect(session.pendingAcceptBytes).toBe(0);
    session.destroy();
    await session.closed;
  });

  it('the opener of a stream reset for the budget or the pending limit gets ERR_STREAM_RESET; one accepted frees room', async () => {
    const pair = await sessionPair({}, { deferAccept: true, maxPendingAccept: 4, pendingAcceptBudget: 512 * KiB });
    const pending: YamuxStream[] = [];
    pair.b.on('stream', (stream: YamuxStream) => {
      stream.on('error', () => undefined);
      pending.push(stream);
    });

    // Past the pending limit: refused at its SYN.
    const streams = Array.from({ length: 5 }, () => pair.a.openStream());
    const refused = await nextError(streams[4]);
    expect(refused).toMatchObject({ code: 'ERR_STREAM_RESET' });
    await waitFor(() => pending.length === 4);
    expect(pair.b.pendingAcceptStreams).toBe(4);

    // Two full windows fit the 512 KiB budget only without the per-frame charge: the second stream's last frame passes it.
    const full = Buffer.alloc(INITIAL_STREAM_WINDOW, 7);
    streams[0].write(full);
    streams[1].write(full);
    const overBudget = await nextError(streams[1]);
    expect(overBudget).toMatchObject({ code: 'ERR_STREAM_RESET' });
    expect(pair.b.pendingAcceptBytes).toBeLessThanOrEqual(512 * KiB);
    expect(pair.b.pendingAcceptStreams).toBe(3);

    // Accepting the full one gives its bytes back to the budget, and a new stream gets through.
    pending[0].markAccepted();
    expect(pair.b.pendingAcceptStreams).toBe(2);
    expect(pair.b.pendingAcceptBytes).toBe(0);
    const late = pair.a.openStream();
    late.end(full);
    await waitFor(() => pending.length === 5 && pending[4].readableEnded === false && pending[4].readableLength === full.length);
    expect(pair.b.pendingAcceptBytes).toBeGreaterThanOrEqual(full.length);
    for (const stream of [...streams, late]) stream.destroy();
    await waitFor(() => pair.b.streamCount === 0 && pair.b.pendingAcceptStreams === 0);
    await teardown(pair);
  });

  it('a pending stream gets only the initial window even with a larger streamWindow; markAccepted() grants the rest', async () => {
    const { session, peer } = await sessionWithRawPeer({ deferAccept: true, streamWindow: 1 * MiB });
    let accepted: YamuxStream | undefined;
    session.on('stream', (stream: YamuxStream) => (accepted = stream));
    await sendFrame(peer, FrameType.WindowUpdate, Flag.SYN, 2, 0);
    const ack = await peer.expectFrame((f) => f.header.streamId === 2 && (f.header.flags & Flag.ACK) !== 0);
    expect(ack.header.length).toBe(0);
    accepted!.markAccepted();
    const grant = await peer.expectFrame((f) => f.header.streamId === 2 && f.header.type === FrameType.WindowUpdate && f.header.flags === 0);
    expect(grant.header.length).toBe(1 * MiB - INITIAL_STREAM_WINDOW);
    // A second call changes nothing.
    accepted!.markAccepted();
    await settled(peer, 2);
    expect(peer.frames.filter((f) => f.header.streamId === 2 && f.header.type === FrameType.WindowUpdate && f.header.flags === 0)).toHaveLength(1);
    session.destroy();
    await session.closed;
  });

  it('without deferAccept the budget does not apply: the stream event is the hand-off', async () => {
    const { session, peer } = await sessionWithRawPeer();
    let streams = 0;
    session.on('stream', () => streams++);
    for (let n = 0; n < 20; n++) {
      await sendFrame(peer, FrameType.WindowUpdate, Flag.SYN, 2 + 2 * n, 0);
      for (let index = 0; index < INITIAL_STREAM_WINDOW / FRAME; index++) await sendFrame(peer, FrameType.Data, 0, 2 + 2 * n, frameBody(n, index));
    }
    await settled(peer, 3);
    expect(streams).toBe(20);
    expect(session.pendingAcceptStreams).toBe(0);
    expect(peer.frames.some((f) => f.header.flags & Flag.RST)).toBe(false);
    session.destroy();
    await session.closed;
  });
});
