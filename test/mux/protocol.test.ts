import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { MuxError } from '../../src/errors.js';
import { Flag, FrameType, GoAwayCode, encodeHeader, type YamuxStream } from '../../src/mux/index.js';
import { nextError, readAll, sleep, waitFor } from './helpers.js';
import { sessionWithRawPeer, type RawPeer } from './raw-peer.js';

const KiB = 1024;

/** The peer (server, even ids) opens a stream; resolves to our side of it. */
async function peerOpens(session: NodeJS.EventEmitter, peer: RawPeer, id: number, flags = 0, delta = 0): Promise<YamuxStream> {
  const accepted = new Promise<YamuxStream>((resolve) => session.once('stream', resolve));
  peer.send(FrameType.WindowUpdate, Flag.SYN | flags, id, delta);
  return accepted;
}

async function expectProtocolFailure(
  setup: (peer: RawPeer, stream: YamuxStream) => void,
  messagePart: RegExp,
): Promise<void> {
  const { session, peer } = await sessionWithRawPeer();
  session.on('stream', (accepted: YamuxStream) => accepted.on('error', () => {}));
  const stream = session.openStream();
  const streamFailure = nextError(stream);
  setup(peer, stream);
  const err = (await session.closed) as MuxError;
  expect(err).toBeInstanceOf(MuxError);
  expect(err.code).toBe('ERR_MUX_PROTOCOL');
  expect(err.message).toMatch(messagePart);
  expect(session.isClosed).toBe(true);
  // Open streams fail with the same error, and the peer was told why.
  expect((await streamFailure).code).toBe('ERR_MUX_PROTOCOL');
  const goAway = await peer.expectFrame((f) => f.header.type === FrameType.GoAway);
  expect(goAway.header.length).toBe(GoAwayCode.ProtocolError);
  if (!peer.socket.closed) await once(peer.socket, 'close');
}

describe('protocol violations destroy the session with ERR_MUX_PROTOCOL', { timeout: 30_000 }, () => {
  it('bad version byte', async () => {
    await expectProtocolFailure((peer) => {
      const header = encodeHeader(FrameType.Ping, Flag.SYN, 0, 1);
      header[0] = 1;
      peer.socket.write(header);
    }, /version 1/);
  });

  it('unknown frame type', async () => {
    await expectProtocolFailure((peer) => peer.socket.write(encodeHeader(9 as FrameType, 0, 0, 0)), /type 9/);
  });

  it('Data beyond the receive window (exactly one window is fine, one byte more is not)', async () => {
    await expectProtocolFailure((peer, stream) => {
      peer.send(FrameType.WindowUpdate, Flag.ACK, stream.id, 0);
      peer.send(FrameType.Data, 0, stream.id, Buffer.alloc(200 * KiB));
      peer.send(FrameType.Data, 0, stream.id, Buffer.alloc(56 * KiB));
      peer.send(FrameType.Data, 0, stream.id, Buffer.alloc(1));
    }, /overruns its receive window of 0 bytes/);
  });

  it('a frame for a stream the peer never opened', async () => {
    await expectProtocolFailure((peer) => peer.send(FrameType.Data, 0, 4, Buffer.from('who?')), /stream 4, which was never opened/);
  });

  it('a frame for one of our ids we never used', async () => {
    await expectProtocolFailure((peer) => peer.send(FrameType.WindowUpdate, 0, 99, 10), /stream 99, which was never opened/);
  });

  it('a SYN for an id from our range, or for one already open (a lower id than the last is fine: see stream-ids.test.ts)', async () => {
    await expectProtocolFailure((peer) => peer.send(FrameType.WindowUpdate, Flag.SYN, 3, 0), /our side's range/);
    await expectProtocolFailure((peer) => {
      peer.send(FrameType.WindowUpdate, Flag.SYN, 4, 0);
      peer.send(FrameType.WindowUpdate, Flag.SYN, 2, 0);
      peer.send(FrameType.WindowUpdate, Flag.SYN, 4, 0);
    }, /stream 4, which is already open/);
  });

  it('Data after the stream was half-closed by the peer', async () => {
    await expectProtocolFailure((peer, stream) => {
      peer.send(FrameType.WindowUpdate, Flag.ACK | Flag.FIN, stream.id, 0);
      peer.send(FrameType.Data, 0, stream.id, Buffer.from('too late'));
    }, /after its FIN/);
  });

  it('a GoAway carrying the protocol-error code from the peer', async () => {
    const { session, peer } = await sessionWithRawPeer();
    peer.send(FrameType.GoAway, 0, 0, GoAwayCode.ProtocolError);
    expect(((await session.closed) as MuxError).code).toBe('ERR_MUX_PROTOCOL');
  });
});

describe('a peer that sends but never reads', { timeout: 30_000 }, () => {
  it('is cut off once the replies queued for it pass the backlog limit', async () => {
    const { session, peer } = await sessionWithRawPeer();
    peer.socket.pause();
    const pings = Buffer.concat(Array.from({ length: 10_000 }, (_, i) => encodeHeader(FrameType.Ping, Flag.SYN, 0, i)));
    let sent = 0;
    while (!session.isClosed && !peer.socket.destroyed && sent < 256 << 20) {
      const more = peer.socket.write(pings);
      sent += pings.length;
      if (!more) await new Promise((resolve) => peer.socket.once('drain', resolve).once('close', resolve));
    }
    const err = (await session.closed) as MuxError;
    expect(err.code).toBe('ERR_MUX_PROTOCOL');
    expect(err.message).toContain('not reading');
    expect(sent).toBeLessThan(256 << 20);
    peer.socket.destroy();
  });
});

describe('frames the session accepts', { timeout: 30_000 }, () => {
  it('ignores frames for a stream that was closed earlier', async () => {
    const { session, peer } = await sessionWithRawPeer();
    const stream = session.openStream();
    stream.destroy();
    await peer.expectFrame((f) => f.header.streamId === stream.id && (f.header.flags & Flag.RST) !== 0);
    // In flight before the peer saw the RST: must be dropped silently.
    peer.send(FrameType.Data, Flag.ACK, stream.id, Buffer.from('late data'));
    peer.send(FrameType.WindowUpdate, Flag.FIN, stream.id, 1000);
    // Still alive and in sync: a ping sent after those frames is answered.
    peer.send(FrameType.Ping, Flag.SYN, 0, 42);
    await peer.expectFrame((f) => f.header.type === FrameType.Ping && f.header.length === 42);
    expect(session.isClosed).toBe(false);
    session.destroy();
  });

  it('bit-tests flags: Data with SYN|FIN opens, delivers its body, then ends; WindowUpdate with ACK|FIN ends', async () => {
    const { session, peer } = await sessionWithRawPeer();
    const accepted = new Promise<YamuxStream>((resolve) => session.once('stream', resolve));
    peer.send(FrameType.Data, Flag.SYN | Flag.FIN, 2, Buffer.from('opened and closed in one frame'));
    const incoming = await accepted;
    expect((await readAll(incoming)).toString()).toBe('opened and closed in one frame');
    await peer.expectFrame((f) => f.header.streamId === 2 && (f.header.flags & Flag.ACK) !== 0);

    const outgoing = session.openStream();
    const ended = readAll(outgoing);
    peer.send(FrameType.WindowUpdate, Flag.ACK | Flag.FIN, outgoing.id, 0);
    expect((await ended).length).toBe(0);

    incoming.end();
    outgoing.end();
    await waitFor(() => session.streamCount === 0);
    session.destroy();
  });

  it('honours a window delta carried on SYN, parks the write at zero window, resumes on WindowUpdate', async () => {
    const { session, peer } = await sessionWithRawPeer();
    const delta = 768 * KiB;
    const stream = await peerOpens(session, peer, 2, 0, delta);
    stream.on('error', () => {});
    const total = 2 * 1024 * KiB;
    const written = new Promise<void>((resolve) => stream.write(Buffer.alloc(total, 7), () => resolve()));
    await waitFor(() => peer.dataBytes(2) === 256 * KiB + delta);
    await sleep(100);
    expect(peer.dataBytes(2)).toBe(256 * KiB + delta);
    peer.send(FrameType.WindowUpdate, 0, 2, total);
    await written;
    await waitFor(() => peer.dataBytes(2) === total);
    const frames = peer.frames.filter((f) => f.header.type === FrameType.Data);
    expect(Math.max(...frames.map((f) => f.body.length))).toBe(64 * KiB);
    session.destroy();
  });

  it('answers a Ping with ACK and the same opaque value', async () => {
    const { session, peer } = await sessionWithRawPeer();
    peer.send(FrameType.Ping, Flag.SYN, 0, 0xdead_beef);
    const pong = await peer.expectFrame((f) => f.header.type === FrameType.Ping);
    expect(pong.header).toMatchObject({ flags: Flag.ACK, streamId: 0, length: 0xdead_beef });
    session.destroy();
  });

  it('refuses with RST a stream opened after our close(); a stream from before runs to completion', async () => {
    const { session, peer } = await sessionWithRawPeer();
    const early = await peerOpens(session, peer, 2);
    session.close();
    expect(session.isClosed).toBe(true);
    expect(() => session.openStream()).toThrow(expect.objectContaining({ code: 'ERR_SESSION_CLOSED' }));
    const goAway = await peer.expectFrame((f) => f.header.type === FrameType.GoAway);
    expect(goAway.header.length).toBe(GoAwayCode.Normal);

    peer.send(FrameType.WindowUpdate, Flag.SYN, 4, 0);
    await peer.expectFrame((f) => f.header.streamId === 4 && (f.header.flags & Flag.RST) !== 0);

    // The earlier stream still works both ways until both sides have sent FIN.
    peer.send(FrameType.Data, Flag.FIN, 2, Buffer.from('request'));
    expect((await readAll(early)).toString()).toBe('request');
    early.end('response');
    const fin = await peer.expectFrame((f) => f.header.streamId === 2 && (f.header.flags & Flag.FIN) !== 0);
    expect(fin.header.type).toBe(FrameType.WindowUpdate);
    expect(peer.frames.find((f) => f.header.streamId === 2 && f.header.type === FrameType.Data)?.body.toString()).toBe('response');

    // Now nothing is open: the session ends the transport, and settles cleanly once it has closed.
    await waitFor(() => peer.socket.readableEnded);
    expect(await session.closed).toBeUndefined();
  });

  it('stops opening streams after the peer sent GoAway(normal), but keeps the open ones', async () => {
    const { session, peer } = await sessionWithRawPeer();
    const stream = session.openStream();
    stream.on('error', () => {});
    peer.send(FrameType.GoAway, 0, 0, GoAwayCode.Normal);
    await waitFor(() => {
      try {
        session.openStream().destroy();
        return false;
      } catch (err) {
        return (err as MuxError).code === 'ERR_SESSION_CLOSED';
      }
    });
    expect(session.isClosed).toBe(false);
    stream.write('still flowing');
    await waitFor(() => peer.dataBytes(stream.id) === 'still flowing'.length);
    session.destroy();
  });
});
