import { describe, expect, it } from 'vitest';
import { FrameParser, FrameType, type YamuxStream } from '../../src/mux/index.js';
import { destroyPair, sessionPair, sleep, waitFor } from './helpers.js';

const MiB = 1 << 20;

describe('an interactive stream beside a bulk one', () => {
  it('gets its small write onto the wire within a bounded number of frames, whatever the bulk stream has queued', async () => {
    // Large windows, so the bulk stream always has megabytes it may send: a FIFO would put all of it first.
    const pair = await sessionPair({ streamWindow: 16 * MiB }, { streamWindow: 16 * MiB });
    // What the sending session hands its socket, frame by frame, in order: what has left it. (The
    // kernel's buffers then carry megabytes on loopback, the same for every stream.)
    const wire: Array<{ stream: number; length: number }> = [];
    const tap = new FrameParser({
      frame: (header) => {
        if (header.type === FrameType.Data && header.length > 0) wire.push({ stream: header.streamId, length: header.length });
      },
      data: () => undefined,
      dataEnd: () => undefined,
      error: (err) => {
        throw err;
      },
    });
    const write = pair.client.write.bind(pair.client) as (chunk: Buffer, ...rest: unknown[]) => boolean;
    pair.client.write = ((chunk: Buffer, ...rest: unknown[]) => {
      tap.push(chunk);
      return write(chunk, ...rest);
    }) as typeof pair.client.write;
    const accepted: YamuxStream[] = [];
    pair.b.on('stream', (stream: YamuxStream) => {
      accepted.push(stream);
      stream.resume();
    });
    const bulk = pair.a.openStream();
    const chunk = Buffer.alloc(MiB);
    let writing = true;
    const pump = (async () => {
      while (writing && !bulk.destroyed) {
        if (bulk.write(chunk)) continue;
        await new Promise<void>((resolve) => {
          const done = (): void => {
            bulk.off('drain', done).off('close', done);
            resolve();
          };
          bulk.on('drain', done).on('close', done);
        });
      }
    })();
    const interactive = pair.a.openStream();
    const samples: number[] = [];
    for (let round = 0; round < 20; round++) {
      await sleep(20);
      const before = wire.length;
      interactive.write(Buffer.alloc(64, round));
      await waitFor(() => wire.slice(before).some((f) => f.stream === interactive.id));
      const ahead = wire.slice(before).findIndex((f) => f.stream === interactive.id);
      samples.push(ahead);
    }
    writing = false;
    const sentBulk = wire.filter((f) => f.stream === bulk.id).reduce((sum, f) => sum + f.length, 0);
    console.log(`64-byte writes beside a bulk stream (${(sentBulk / MiB).toFixed(0)} MiB sent meanwhile): bulk frames handed to the socket ahead of each: ${samples.join(', ')}`);
    expect(sentBulk).toBeGreaterThan(16 * MiB);
    // Streams take turns a frame each: at most the bulk frame being written goes first, never its backlog.
    expect(Math.max(...samples)).toBeLessThanOrEqual(2);
    await destroyPair(pair);
    await pump.catch(() => undefined);
  });
});
