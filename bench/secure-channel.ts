/**
 * Throughput of the end-to-end channel against the raw socket, on one loopback TCP connection.
 * The receiver runs in a worker thread so that sender and receiver each get a core, as two
 * processes would. Ratios within one run are what to compare; absolute figures vary a lot here.
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/secure-channel.js
 *
 * BENCH_MIB (default 256) sets the bytes per transfer, BENCH_RUNS (default 3) the transfers per
 * mode (the median is reported), BENCH_MODES a comma-separated subset of the modes below. The Noise candidate is measured only when its package is present
 * (`npm install --no-save @hyperswarm/secret-stream`), since ridproxy does not depend on it.
 */
import { connect, createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Identity } from '../src/id/identity.js';
import { RoutingId } from '../src/id/routing-id.js';
import { secureContextFor } from '../src/secure/certificate.js';
import { secureChannel } from '../src/secure/index.js';
import { jsDuplex } from './lib/js-duplex.js';

const MODES = ['raw', 'tls', 'secure', 'secure-js-duplex', 'noise', 'noise-js-duplex'] as const;
type Mode = (typeof MODES)[number];
const MIB = 1024 * 1024;
const TOTAL = Number(process.env.BENCH_MIB ?? 256) * MIB;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const HANDSHAKES = 100;
const BLOCK = Buffer.alloc(64 * 1024, 0x5a);

interface WorkerSetup {
  mode: Mode;
}

type NoiseStream = Duplex;
type NoiseConstructor = new (isInitiator: boolean, rawStream: Duplex) => NoiseStream;

/** The optional Noise candidate, or undefined when its package is not installed. */
async function loadNoise(): Promise<NoiseConstructor | undefined> {
  const name = '@hyperswarm/secret-stream';
  try {
    const mod = (await import(name)) as { default: NoiseConstructor };
    return mod.default;
  } catch {
    return undefined;
  }
}

async function wrap(mode: Mode, socket: Socket, role: 'dialer' | 'acceptor', identity: Identity, peer: RoutingId | undefined, Noise: NoiseConstructor | undefined): Promise<Duplex> {
  // Without it, a handshake's back-to-back small writes wait on delayed ACKs (40 ms here), which
  // measures Nagle's algorithm rather than the protocols.
  socket.setNoDelay(true);
  switch (mode) {
    case 'raw':
      return socket;
    case 'tls': {
      // Plain node:tls with the same context: the floor under what the channel adds.
      const common = { secureContext: secureContextFor(identity), rejectUnauthorized: false };
      const tls = role === 'dialer' ? tlsConnect({ ...common, socket }) : new TLSSocket(socket, { ...common, isServer: true, requestCert: true });
      await new Promise((resolve) => tls.once(role === 'dialer' ? 'secureConnect' : 'secure', resolve));
      return tls;
    }
    case 'secure':
    case 'secure-js-duplex': {
      const transport = mode === 'secure' ? socket : jsDuplex(socket);
      const { stream } = await secureChannel(transport, { identity, role, expectedRoutingId: role === 'dialer' ? peer : undefined });
      return stream;
    }
    case 'noise':
    case 'noise-js-duplex':
      if (Noise === undefined) throw new Error('noise candidate not installed');
      return new Noise(role === 'dialer', mode === 'noise' ? socket : jsDuplex(socket));
  }
}

async function receiver(): Promise<void> {
  const { mode } = workerData as WorkerSetup;
  const identity = Identity.generate();
  const Noise = await loadNoise();
  const server = createServer((socket) => {
    void wrap(mode, socket, 'acceptor', identity, undefined, Noise).then((stream) => {
      let received = 0;
      stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received === TOTAL) parentPort?.postMessage({ received });
      });
      // The sender cuts the connection once it has its figure; only an error before that counts.
      stream.on('error', (err) => {
        if (received < TOTAL) parentPort?.postMessage({ error: String(err) });
      });
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    parentPort?.postMessage({ port: address.port, routingId: identity.routingId.toString() });
  });
}

function nextMessage<T>(worker: Worker): Promise<T> {
  return new Promise((resolve) => worker.once('message', resolve));
}

async function send(stream: Duplex): Promise<void> {
  for (let sent = 0; sent < TOTAL; sent += BLOCK.length) {
    if (!stream.write(BLOCK)) await new Promise((resolve) => stream.once('drain', resolve));
  }
}

async function throughput(mode: Mode, Noise: NoiseConstructor | undefined): Promise<number> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { mode } satisfies WorkerSetup });
  try {
    const { port, routingId } = await nextMessage<{ port: number; routingId: string }>(worker);
    const identity = Identity.generate();
    const rates: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const socket = connect(port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      const stream = await wrap(mode, socket, 'dialer', identity, RoutingId.parse(routingId), Noise);
      const done = nextMessage<{ received?: number; error?: string }>(worker);
      const start = performance.now();
      await send(stream);
      const result = await done;
      if (result.error !== undefined) throw new Error(`${mode}: receiver failed: ${result.error}`);
      rates.push(TOTAL / MIB / ((performance.now() - start) / 1000));
      stream.destroy();
    }
    return median(rates);
  } finally {
    await worker.terminate();
  }
}

/** Sequential handshakes over fresh loopback connections, both ends in this thread. */
async function handshakeTime(mode: Mode, Noise: NoiseConstructor | undefined): Promise<number> {
  const server = Identity.generate();
  const client = Identity.generate();
  const accepted: Array<(stream: Duplex) => void> = [];
  const listener = createServer((socket) => {
    void wrap(mode, socket, 'acceptor', server, undefined, Noise).then((stream) => accepted.shift()?.(stream));
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const address = listener.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const times: number[] = [];
  for (let i = 0; i < HANDSHAKES; i++) {
    const serverSide = new Promise<Duplex>((resolve) => accepted.push(resolve));
    const start = performance.now();
    const socket = connect(address.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const stream = await wrap(mode, socket, 'dialer', client, server.routingId, Noise);
    // One byte each way, so the time covers a channel both ends can actually use.
    stream.write(Buffer.from([1]));
    const remote = await serverSide;
    await new Promise((resolve) => remote.once('data', resolve));
    remote.write(Buffer.from([2]));
    await new Promise((resolve) => stream.once('data', resolve));
    times.push(performance.now() - start);
    for (const end of [stream, remote]) end.on('error', () => undefined).destroy();
  }
  await new Promise((resolve) => listener.close(resolve));
  return median(times);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const Noise = await loadNoise();
  const wanted = process.env.BENCH_MODES?.split(',') ?? MODES;
  // raw always runs: it is what the other figures are ratios of.
  const modes = MODES.filter((mode) => mode === 'raw' || (wanted.includes(mode) && (!mode.startsWith('noise') || Noise !== undefined)));
  console.log(`node ${process.version}, OpenSSL ${process.versions.openssl}; ${TOTAL / MIB} MiB one way, median of ${RUNS}; handshake: median of ${HANDSHAKES}`);
  if (Noise === undefined) console.log('(noise candidate not installed: npm install --no-save @hyperswarm/secret-stream to include it)');
  const results: Array<{ mode: Mode; rate: number; handshake: number }> = [];
  for (const mode of modes) results.push({ mode, rate: await throughput(mode, Noise), handshake: await handshakeTime(mode, Noise) });
  const raw = results[0].rate;
  console.log('mode              MiB/s   x raw   handshake+1 RTT ms');
  for (const { mode, rate, handshake } of results) {
    console.log(`${mode.padEnd(16)} ${rate.toFixed(0).padStart(6)}   ${(rate / raw).toFixed(2).padStart(5)}   ${handshake.toFixed(2).padStart(8)}`);
  }
}

if (isMainThread) await main();
else await receiver();
