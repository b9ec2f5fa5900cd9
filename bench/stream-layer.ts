/**
 * What one Node stream layer costs per frame, for the choice of which layers below the Flow stay
 * streams (the secure channel and the VC are `Duplex`es; the multiplexer passes frames by calls):
 *
 *   npm run build && node dist/bench/stream-layer.js
 *
 * - `Duplex write`: a frame written as the layers write one, cork, a 12-byte header, a 64 KiB
 *   payload, uncork, into a Duplex whose `_writev` takes both and calls back at once.
 * - `function call`: the same two buffers handed to a plain method.
 * - `Duplex push`: a 64 KiB chunk pushed to a `'data'` listener, as a layer hands up what it read.
 *
 * Each figure is the median of BENCH_RUNS (default 5) runs of BENCH_FRAMES (default 200,000)
 * frames, yielding to the event loop every 1,000 so that deferred callbacks run inside the clock.
 */
import { Duplex } from 'node:stream';

const FRAMES = Number(process.env.BENCH_FRAMES ?? 200_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const header = Buffer.alloc(12);
const payload = Buffer.alloc(64 * 1024);
let carried = 0;

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function timed(step: () => void): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < FRAMES; i++) {
    step();
    if (i % 1000 === 999) await turn();
  }
  await turn();
  return Number(process.hrtime.bigint() - start) / FRAMES / 1000;
}

async function median(step: () => void): Promise<number> {
  const runs: number[] = [];
  for (let run = 0; run < RUNS; run++) runs.push(await timed(step));
  runs.sort((a, b) => a - b);
  return runs[Math.floor(runs.length / 2)];
}

async function main(): Promise<void> {
  const writable = new Duplex({
    writableHighWaterMark: 512 * 1024,
    read() {},
    writev(chunks, callback) {
      for (const { chunk } of chunks) carried += (chunk as Buffer).length;
      callback();
    },
  });
  const direct = {
    send(parts: readonly Buffer[]): boolean {
      for (const part of parts) carried += part.length;
      return true;
    },
  };
  const readable = new Duplex({ read() {}, write: (_chunk, _encoding, callback) => callback() });
  readable.on('data', (chunk: Buffer) => (carried += chunk.length));

  const rows: Array<[string, number]> = [
    [
      'Duplex write (cork, header, payload, uncork)',
      await median(() => {
        writable.cork();
        writable.write(header);
        writable.write(payload);
        writable.uncork();
      }),
    ],
    ['function call (header, payload)', await median(() => direct.send([header, payload]))],
    ['Duplex push to a data listener', await median(() => readable.push(payload))],
  ];
  process.stdout.write(`per 64 KiB frame, median of ${RUNS} runs of ${FRAMES} frames (Node ${process.version})\n`);
  for (const [name, us] of rows) process.stdout.write(`${name.padEnd(48)}${us.toFixed(2).padStart(8)} µs\n`);
  if (carried === 0) throw new Error('nothing was carried');
}

await main();
