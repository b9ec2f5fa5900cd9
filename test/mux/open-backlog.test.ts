import { describe, expect, it } from 'vitest';
import type { MuxError } from '../../src/errors.js';
import { Flag, FrameType, GoAwayCode } from '../../src/mux/index.js';
import { nextError, sleep, waitFor } from './helpers.js';
import { sessionWithRawPeer, type ReceivedFrame } from './raw-peer.js';

/*
 * hashicorp/yamux queues at most 256 streams its application has not accepted (it sends the ACK
 * at accept) and resets every SYN beyond. So we keep at most `openBacklog` (default 256) SYNs
 * unacknowledged; a stream opened beyond waits here, and its SYN, data and FIN go out in order
 * once an earlier SYN is acknowledged or its stream closes.
 */

const isSyn = (f: ReceivedFrame): boolean => (f.header.flags & Flag.SYN) !== 0;

describe('openStream keeps at most openBacklog SYNs awaiting their ACK', { timeout: 30_000 }, () => {
  it('300 opened at once: 256 SYNs go out; each ACK or reset lets one more go, a waiting stream destroyed sends nothing', async () => {
    const { session, peer } = await sessionWithRawPeer();
    const streams = Array.from({ length: 300 }, () => session.openStream());
    streams.forEach((s) => s.on('error', () => {}));
    streams.forEach((s) => s.write('x'));
    await waitFor(() => peer.frames.filter(isSyn).length === 256);
    await sleep(100);
    expect(peer.frames.filter(isSyn).length).toBe(256);
    expect(session.streamsAwaitingAck).toBe(256);
    expect(session.streamsAwaitingSyn).toBe(44);
    expect(session.streamCount).toBe(300);
    // Only the announced ones sent their data.
    expect(peer.dataBytes(streams[255].id)).toBe(1);
    expect(peer.frames.some((f) => f.header.streamId === streams[256].id)).toBe(false);

    peer.send(FrameType.WindowUpdate, Flag.ACK, streams[0].id, 0);
    await waitFor(() => peer.dataBytes(streams[256].id) === 1);
    const forNext = peer.frames.filter((f) => f.header.streamId === streams[256].id);
    expect(forNext.map((f) => f.header.flags & Flag.SYN)).toEqual([Flag.SYN, 0]);

    peer.send(FrameType.WindowUpdate, Flag.RST, streams[1].id, 0);
    await waitFor(() => peer.frames.some((f) => f.header.streamId === streams[257].id && isSyn(f)));

    const last = streams[299];
    last.destroy();
    await waitFor(() => session.streamsAwaitingSyn === 41);
    expect(session.streamsAwaitingAck).toBe(256);

    // ACK everything announced: the rest follow, each once.
    for (const s of streams.slice(2, 299)) peer.send(FrameType.WindowUpdate, Flag.ACK, s.id, 0);
    await waitFor(() => session.streamsAwaitingSyn === 0 && session.streamsAwaitingAck === 0);
    const synIds = peer.frames.filter(isSyn).map((f) => f.header.streamId);
    expect(synIds).toEqual(streams.slice(0, 299).map((s) => s.id));
    expect(peer.frames.some((f) => f.header.streamId === last.id)).toBe(false);
    session.destroy();
  });

  it("a waiting stream's data and FIN follow its SYN, in order", async () => {
    const { session, peer } = await sessionWithRawPeer({ openBacklog: 1 });
    const first = session.openStream();
    const waiting = session.openStream();
    const empty = session.openStream();
    waiting.write('hello');
    waiting.end(' world');
    empty.end();
    await sleep(50);
    expect(peer.frames.map((f) => f.header.streamId)).toEqual([first.id]);
    peer.send(FrameType.WindowUpdate, Flag.ACK, first.id, 0);
    await waitFor(() => peer.frames.some((f) => f.header.streamId === waiting.id && (f.header.flags & Flag.FIN) !== 0));
    const frames = peer.frames.filter((f) => f.header.streamId === waiting.id);
    expect(frames.map((f) => [f.header.type, f.header.flags, f.body.toString()])).toEqual([
      [FrameType.WindowUpdate, Flag.SYN, ''],
      [FrameType.Data, 0, 'hello'],
      [FrameType.Data, 0, ' world'],
      [FrameType.WindowUpdate, Flag.FIN, ''],
    ]);
    expect(peer.frames.some((f) => f.header.streamId === empty.id)).toBe(false);
    // Its peer closing the first stream frees the slot for the empty one: SYN, then its FIN.
    peer.send(FrameType.WindowUpdate, Flag.ACK, waiting.id, 0);
    await waitFor(() => peer.frames.filter((f) => f.header.streamId === empty.id).length === 2);
    expect(peer.frames.filter((f) => f.header.streamId === empty.id).map((f) => f.header.flags)).toEqual([Flag.SYN, Flag.FIN]);
    session.destroy();
  });

  it("the peer's GoAway fails waiting streams with ERR_SESSION_CLOSED; nothing is sent for them", async () => {
    const { session, peer } = await sessionWithRawPeer({ openBacklog: 1 });
    const first = session.openStream();
    first.on('error', () => {});
    const waiting = session.openStream();
    const failure = nextError(waiting);
    peer.send(FrameType.GoAway, 0, 0, GoAwayCode.Normal);
    const err = (await failure) as MuxError;
    expect(err.code).toBe('ERR_SESSION_CLOSED');
    expect(err.message).toContain('GoAway');
    expect(session.streamsAwaitingSyn).toBe(0);
    await sleep(50);
    expect(peer.frames.some((f) => f.header.streamId === waiting.id)).toBe(false);
    expect(session.isClosed).toBe(false);
    session.destroy();
  });

  it('a frame from the peer for a waiting stream is for a stream never opened', async () => {
    const { session, peer } = await sessionWithRawPeer({ openBacklog: 1 });
    session.openStream().on('error', () => {});
    const waiting = session.openStream();
    waiting.on('error', () => {});
    peer.send(FrameType.WindowUpdate, Flag.ACK, waiting.id, 0);
    const err = (await session.closed) as MuxError;
    expect(err.code).toBe('ERR_MUX_PROTOCOL');
    expect(err.message).toContain(`stream ${waiting.id}, which was never opened`);
  });

  it('openBacklog must be at least 1', async () => {
    await expect(sessionWithRawPeer({ openBacklog: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
  });
});
