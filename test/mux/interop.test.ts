import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { Stream } from '@libp2p/interface';
import { YamuxSession, type YamuxStream } from '../../src/mux/index.js';
import { libp2pMuxer, libp2pReadAll, libp2pWrite } from './libp2p-adapter.js';
import { nextError, readAll, sha256, socketPair, waitFor } from './helpers.js';

const STREAMS = 50;
/** Above the 256 KiB initial window, so both implementations must send and honour window updates. */
const SIZE = 300 * 1024;

/** libp2p side of an echo: everything received goes back, and its side closes after the peer's FIN. */
function libp2pEcho(stream: Stream): void {
  stream.addEventListener('message', (evt) => {
    stream.send(evt.data);
  });
  stream.addEventListener('remoteCloseWrite', () => {
    void stream.close();
  });
}

describe('wire compatibility with @libp2p/yamux over TCP', { timeout: 30_000 }, () => {
  it('ours as client, theirs as server: 50 streams echo 300 KiB each with half-close, ping both ways, GoAway', async () => {
    const { client, server } = await socketPair();
    const theirs = libp2pMuxer(server, false);
    const ours = new YamuxSession(client, { client: true, keepAliveInterval: 0 });
    theirs.addEventListener('stream', (evt) => libp2pEcho(evt.detail));

    const payloads = Array.from({ length: STREAMS }, () => randomBytes(SIZE));
    const streams = payloads.map(() => ours.openStream());
    const replies = await Promise.all(
      streams.map((stream, i) => {
        const reply = readAll(stream);
        stream.end(payloads[i]);
        return reply;
      }),
    );
    replies.forEach((reply, i) => expect(sha256(reply)).toBe(sha256(payloads[i])));
    await waitFor(() => ours.streamCount === 0 && theirs.streams.length === 0);

    expect(await ours.ping()).toBeGreaterThanOrEqual(0);
    expect(await theirs.ping()).toBeGreaterThanOrEqual(0);

    ours.close();
    expect(await ours.closed).toBeUndefined();
    await theirs.close();
    expect(theirs.status).toBe('closed');
  });

  it('theirs as client, ours as server: 50 streams echo 300 KiB each with half-close', async () => {
    const { client, server } = await socketPair();
    const theirs = libp2pMuxer(client, true);
    const ours = new YamuxSession(server, { client: false, keepAliveInterval: 0 });
    const accepted: number[] = [];
    ours.on('stream', (stream: YamuxStream) => {
      accepted.push(stream.id);
      stream.pipe(stream);
    });

    const payloads = Array.from({ length: STREAMS }, () => randomBytes(SIZE));
    const replies = await Promise.all(
      payloads.map(async (payload) => {
        const stream = await theirs.createStream();
        const reply = libp2pReadAll(stream);
        await libp2pWrite(stream, payload);
        await stream.close();
        return reply;
      }),
    );
    replies.forEach((reply, i) => expect(sha256(reply)).toBe(sha256(payloads[i])));
    expect(accepted).toHaveLength(STREAMS);
    expect(accepted.every((id) => id % 2 === 1)).toBe(true);
    await waitFor(() => ours.streamCount === 0 && theirs.streams.length === 0);

    // Their keepalive pinged us on start-up; our answer gave them an RTT.
    await waitFor(() => theirs.getRTT() >= 0);
    expect(await ours.ping()).toBeGreaterThanOrEqual(0);

    await theirs.close();
    ours.close();
    expect(await ours.closed).toBeUndefined();
    if (!client.closed) await once(client, 'close');
  });

  it('streams opened from both ends at once, and resets both ways', async () => {
    const { client, server } = await socketPair();
    const ours = new YamuxSession(client, { client: true, keepAliveInterval: 0 });
    const theirs = libp2pMuxer(server, false);
    ours.on('stream', (stream: YamuxStream) => stream.pipe(stream));
    const theirAccepted: Stream[] = [];
    theirs.addEventListener('stream', (evt) => {
      theirAccepted.push(evt.detail);
      libp2pEcho(evt.detail);
    });

    const fromUs = Array.from({ length: 10 }, async () => {
      const payload = randomBytes(70_000);
      const stream = ours.openStream();
      const reply = readAll(stream);
      stream.end(payload);
      expect(sha256(await reply)).toBe(sha256(payload));
    });
    const fromThem = Array.from({ length: 10 }, async () => {
      const payload = randomBytes(70_000);
      const stream = await theirs.createStream();
      const reply = libp2pReadAll(stream);
      await libp2pWrite(stream, payload);
      await stream.close();
      expect(sha256(await reply)).toBe(sha256(payload));
    });
    await Promise.all([...fromUs, ...fromThem]);
    await waitFor(() => ours.streamCount === 0 && theirs.streams.length === 0);

    // Our destroy() reaches them as a reset.
    theirAccepted.length = 0;
    const doomed = ours.openStream();
    doomed.write('soon reset');
    await waitFor(() => theirAccepted.length === 1);
    const theirSide = theirAccepted[0];
    const theirClose = new Promise<Error | undefined>((resolve) => theirSide.addEventListener('close', (evt) => resolve(evt.error)));
    doomed.destroy();
    expect((await theirClose)?.name).toBe('StreamResetError');

    // Their abort() reaches us as ERR_STREAM_RESET.
    ours.removeAllListeners('stream');
    const acceptedByUs = new Promise<YamuxStream>((resolve) => ours.once('stream', resolve));
    const theirStream = await theirs.createStream();
    theirStream.send(Buffer.from('hello'));
    const ourSide = await acceptedByUs;
    const failure = nextError(ourSide);
    theirStream.abort(new Error('test abort'));
    expect((await failure).code).toBe('ERR_STREAM_RESET');

    await waitFor(() => ours.streamCount === 0);
    ours.close();
    expect(await ours.closed).toBeUndefined();
    await theirs.close();
  });
});
