import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { MuxError } from '../../src/errors.js';
import type { YamuxStream } from '../../src/mux/index.js';
import { nextError, randomBlocks, readAll, sessionPair, sha256, sleep, teardown, waitFor, writeWithBackpressure } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function nextStream(session: NodeJS.EventEmitter): Promise<YamuxStream> {
  return new Promise((resolve) => session.once('stream', resolve));
}

describe('YamuxStream half-close', { timeout: 30_000 }, () => {
  it('A ends, B keeps writing and A reads it all, then B ends; both see end and the slots are freed', async () => {
    const pair = await sessionPair();
    const accepted = nextStream(pair.b);
    const a = pair.a.openStream();
    const b = await accepted;

    const aEnded = once(a, 'end');
    const bRead = readAll(b);
    a.end('request from A');
    expect((await bRead).toString()).toBe('request from A');
    expect(a.writableFinished).toBe(true);
    expect(a.readableEnded).toBe(false);
    // The slot is still taken: only one side has closed.
    expect(pair.a.streamCount).toBe(1);
    expect(pair.b.streamCount).toBe(1);

    const aRead = readAll(a);
    const reply = Buffer.concat([...randomBlocks(3 * MiB, 256 * KiB)]);
    for (let offset = 0; offset < reply.length; offset += 100 * KiB) {
      await writeWithBackpressure(b, reply.subarray(offset, offset + 100 * KiB));
    }
    await sleep(20);
    expect(a.readableEnded).toBe(false);
    b.end();
    const received = await aRead;
    await aEnded;
    expect(received.length).toBe(reply.length);
    expect(sha256(received)).toBe(sha256(reply));
    await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
    // Both sides closed cleanly, so autoDestroy closes the objects without any error.
    await waitFor(() => a.closed && b.closed);
    expect(a.errored).toBeNull();
    expect(b.errored).toBeNull();
    expect(await teardown(pair)).toEqual([undefined, undefined]);
  });

  // (A Data frame that itself carries FIN is covered with hand-made frames in protocol.test.ts.)
  it('delivers data written right before end() ahead of the end', async () => {
    const pair = await sessionPair();
    const accepted = nextStream(pair.b);
    const a = pair.a.openStream();
    // A corked write plus end() puts the data and the FIN in the same batch.
    a.cork();
    a.write('last words');
    a.end();
    a.uncork();
    const b = await accepted;
    const events: string[] = [];
    b.on('data', (chunk: Buffer) => events.push(`data:${chunk.toString()}`));
    b.on('end', () => events.push('end'));
    await once(b, 'end');
    expect(events).toEqual(['data:last words', 'end']);
    b.end();
    await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
    a.resume();
    await teardown(pair);
  });
});

describe('YamuxStream reset', { timeout: 30_000 }, () => {
  it('destroy() on the opener resets the acceptor with ERR_STREAM_RESET, and vice versa', async () => {
    const pair = await sessionPair();

    let accepted = nextStream(pair.b);
    const opener = pair.a.openStream();
    opener.write('hello');
    let acceptor = await accepted;
    let failure = nextError(acceptor);
    opener.destroy();
    let err = await failure;
    expect(err).toBeInstanceOf(MuxError);
    expect(err.code).toBe('ERR_STREAM_RESET');

    accepted = nextStream(pair.b);
    const opener2 = pair.a.openStream();
    opener2.write('hello');
    acceptor = await accepted;
    failure = nextError(opener2);
    acceptor.destroy();
    err = await failure;
    expect(err.code).toBe('ERR_STREAM_RESET');

    await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
    expect(await teardown(pair)).toEqual([undefined, undefined]);
  });

  it('a reset fails a write parked on a zero window, through its callback', async () => {
    const pair = await sessionPair();
    const accepted = nextStream(pair.b);
    const opener = pair.a.openStream();
    const acceptor = await accepted;
    opener.on('error', () => {});
    // More than one window: the tail of this write waits for credit that never comes.
    const writeDone = new Promise<Error | null | undefined>((resolve) => opener.write(Buffer.alloc(300 * KiB), resolve));
    await sleep(50);
    acceptor.destroy();
    const err = await writeDone;
    expect((err as MuxError).code).toBe('ERR_STREAM_RESET');
    await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
    await teardown(pair);
  });
});

describe('YamuxStream flow control', { timeout: 30_000 }, () => {
  for (const streamWindow of [256 * KiB, 1 * MiB]) {
    it(`a paused reader buffers at most one window (${streamWindow / KiB} KiB) and stalls the sender; resuming delivers all 16 MiB intact`, async () => {
      const pair = await sessionPair({ streamWindow }, { streamWindow });
      const accepted = nextStream(pair.b);
      const sender = pair.a.openStream();
      const receiver = await accepted;
      receiver.pause();

      const total = 16 * MiB;
      let acknowledged = 0;
      const blocks = [...randomBlocks(total, 64 * KiB)];
      const expected = sha256(Buffer.concat(blocks));
      const writing = (async () => {
        for (const block of blocks) {
          if (!sender.write(block, () => (acknowledged += block.length))) await once(sender, 'drain');
        }
        sender.end();
      })();

      await sleep(300);
      const bufferedAtReceiver = receiver.readableLength;
      const acceptedFromSender = acknowledged;
      // The sender stopped: nothing more is taken off its hands while the reader sits still.
      await sleep(200);
      expect(acknowledged).toBe(acceptedFromSender);
      expect(receiver.readableLength).toBe(bufferedAtReceiver);

      console.log(
        `paused reader, window ${streamWindow / KiB} KiB: ${bufferedAtReceiver} bytes buffered at the receiver, ` +
          `${acceptedFromSender} bytes confirmed to the sender, sender writableLength ${sender.writableLength}`,
      );
      expect(bufferedAtReceiver).toBeLessThanOrEqual(streamWindow);
      // The window the receiver announced on ACK is what the sender used, not just the 256 KiB default.
      expect(bufferedAtReceiver).toBeGreaterThan(streamWindow - 64 * KiB);
      // What the sender's callbacks confirmed is what is on its way: one window, plus the one chunk being split.
      expect(acceptedFromSender).toBeLessThanOrEqual(streamWindow + 64 * KiB);
      expect(sender.writableLength).toBeLessThanOrEqual(sender.writableHighWaterMark + 64 * KiB);

      const received = readAll(receiver);
      receiver.resume();
      await writing;
      const data = await received;
      expect(data.length).toBe(total);
      expect(sha256(data)).toBe(expected);
      receiver.end();
      await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
      sender.resume();
      await teardown(pair);
    });
  }

  it('read(n) beyond the window still completes: the reader is granted what it asked to buffer', async () => {
    const pair = await sessionPair();
    const accepted = nextStream(pair.b);
    const sender = pair.a.openStream();
    const message = Buffer.concat([...randomBlocks(3 * MiB, 512 * KiB)]);
    sender.end(message);
    const receiver = await accepted;
    const whole = await new Promise<Buffer>((resolve) => {
      const attempt = (): void => {
        const chunk = receiver.read(message.length) as Buffer | null;
        if (chunk) resolve(chunk);
      };
      receiver.on('readable', attempt);
      attempt();
    });
    expect(sha256(whole)).toBe(sha256(message));
    receiver.end();
    sender.resume();
    await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
    await teardown(pair);
  });
});
