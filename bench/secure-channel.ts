/**
 * Throughput of the end-to-end channel against the raw socket, on one loopback TCP connection.
 * The receiver runs in a worker thread so that sender and receiver each get a core, as two
 * processes would. Ratios within one run are what to compare; absolute figures vary a lot here.
 * Handshakes run with both ends in the main thread, so their CPU time per handshake is what both
 * ends of a VC spend on it; with the cost of one small record, these are the floors under the
 * encrypted figures of `npm run bench` (README, "Performance").
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/secure-channel.js
 *
 * BENCH_MIB (default 256) sets the bytes per transfer, BENCH_RUNS (default 3) the transfers per
 * mode (the median is reported), BENCH_MODES a comma-separated subset of the modes below. The Noise candidate is measured only when its package is present
 * (`npm install --no-save @hyperswarm/secret-stream`), since ridproxy does not depend on it.
 */
import { connect, createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { X509Certificate, randomBytes } from 'node:crypto';
import { connect as tlsConnect, createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Identity } from '../src/id/identity.js';
import { RoutingId } from '../src/id/routing-id.js';
import { secureContextFor, selfSignedCertificate } from '../src/secure/certificate.js';
import { SegmentType, TAG_SIZE, segmentHeader } from '../src/secure/framing.js';
import { secureChannel } from '../src/secure/index.js';
import { RecordOpener, RecordSealer, aeadForSuite } from '../src/secure/records.js';
import { jsDuplex } from './lib/js-duplex.js';

const MODES = ['raw', 'tls', 'tls-resumed', 'secure', 'secure-js-duplex', 'noise', 'noise-js-duplex'] as const;
/** Modes whose bytes travel exactly as another mode's: only their handshake is measured. */
const HANDSHAKE_ONLY: readonly Mode[] = ['tls-resumed'];
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
    case 'tls':
    case 'tls-resumed': {
      // Plain node:tls with the same certificates: the floor under what the channel adds.
      const tls = role === 'dialer' ? tlsConnect({ socket, ...tlsOptions(mode, identity, 'dialer') }) : new TLSSocket(socket, { isServer: true, requestCert: true, ...tlsOptions(mode, identity, 'acceptor') });
      if (mode === 'tls-resumed' && role === 'dialer') tls.once('session', (session: Buffer) => (lastSession = session));
      await new Promise((resolve) => tls.once(role === 'dialer' ? 'secureConnect' : 'secure', resolve));
      if (mode === 'tls-resumed' && role === 'dialer' && lastSession !== undefined && !tls.isSessionReused()) throw new Error('tls-resumed: the session was not resumed');
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

/**
 * TLS 1.3 resumption from a session ticket, which skips the certificates and their signatures:
 * what ridproxy could save by resuming between processes that have met (docs/security.md).
 * Both ends run in one thread here, so one ticket key and one cached session do.
 */
let lastSession: Buffer | undefined;
const resumingContexts = new Map<Identity, SecureContext>();

function tlsOptions(mode: Mode, identity: Identity, role: 'dialer' | 'acceptor'): { secureContext: SecureContext; rejectUnauthorized: false; session?: Buffer } {
  if (mode !== 'tls-resumed') return { secureContext: secureContextFor(identity), rejectUnauthorized: false };
  let context = resumingContexts.get(identity);
  if (context === undefined) {
    context = createSecureContext({ key: identity.toPem(), cert: new X509Certificate(selfSignedCertificate(identity)).toString(), minVersion: 'TLSv1.3', sigalgs: 'ed25519' });
    // A server-side TLSSocket made outside a tls.Server gets neither from node:tls; OpenSSL refuses to resume without them.
    const native = (context as SecureContext & { context: { setSessionIdContext(id: string): void; setTicketKeys(keys: Buffer): void } }).context;
    native.setSessionIdContext('ridproxy-bench');
    native.setTicketKeys(randomBytes(48));
    resumingContexts.set(identity, context);
  }
  return role === 'dialer' ? { secureContext: context, rejectUnauthorized: false, session: lastSession } : { secureContext: context, rejectUnauthorized: false };
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

interface HandshakeCost {
  /** Median wall time of connect + handshake + one byte each way. */
  ms: number;
  /** CPU time of both ends together per handshake (both run in this thread): what caps handshakes per second per core. */
  cpuMs: number;
}

/** Sequential handshakes over fresh loopback connections, both ends in this thread. */
async function handshakeCost(mode: Mode, Noise: NoiseConstructor | undefined): Promise<HandshakeCost> {
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
  const cpuBefore = process.cpuUsage();
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
  const cpu = process.cpuUsage(cpuBefore);
  await new Promise((resolve) => listener.close(resolve));
  return { ms: median(times), cpuMs: (cpu.user + cpu.system) / 1000 / HANDSHAKES };
}

const SMALL_RECORD = 64;
const RECORD_ROUNDS = 20_000;
/** A full Data frame of a VC: what a proxy would open and seal again per frame if the hop were encrypted too. */
const FRAME_RECORD = 64 * 1024;
const FRAME_ROUNDS = 5_000;

/**
 * Microseconds to seal and open one record of `size` bytes through node:crypto. At 64 B it is
 * what the channel adds to a small message on each side it crosses (per-call setup, not the
 * cipher, is most of it); at 64 KiB it is what encrypting the hop would add per forwarded frame.
 */
function recordCost(size: number, rounds: number): number {
  const aead = aeadForSuite('TLS_AES_128_GCM_SHA256');
  const secret = Buffer.alloc(32, 1);
  const sealer = new RecordSealer(aead, secret);
  const opener = new RecordOpener(aead, secret);
  const plaintext = [Buffer.alloc(size, 0x5a)];
  const header = segmentHeader(SegmentType.Data, size + TAG_SIZE);
  const run = (): void => {
    opener.open(header, sealer.seal(header, plaintext));
  };
  for (let i = 0; i < Math.min(1000, rounds); i++) run();
  const start = performance.now();
  for (let i = 0; i < rounds; i++) run();
  return ((performance.now() - start) * 1000) / rounds;
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
  const results: Array<{ mode: Mode; rate: number; handshake: HandshakeCost }> = [];
  for (const mode of modes) {
    const rate = HANDSHAKE_ONLY.includes(mode) ? Number.NaN : await throughput(mode, Noise);
    results.push({ mode, rate, handshake: await handshakeCost(mode, Noise) });
  }
  const raw = results[0].rate;
  console.log('mode              MiB/s   x raw   handshake+1 RTT ms   CPU ms per handshake (both ends)');
  for (const { mode, rate, handshake } of results) {
    console.log(
      `${mode.padEnd(16)} ${(Number.isNaN(rate) ? '—' : rate.toFixed(0)).padStart(6)}   ${(Number.isNaN(rate) ? '—' : (rate / raw).toFixed(2)).padStart(5)}   ${handshake.ms.toFixed(2).padStart(8)}             ${handshake.cpuMs.toFixed(2).padStart(6)}`,
    );
  }
  const record = recordCost(SMALL_RECORD, RECORD_ROUNDS);
  console.log(`one ${SMALL_RECORD} B record, sealed and opened (${RECORD_ROUNDS} times): ${record.toFixed(1)} µs; a round trip seals and opens two`);
  const frame = recordCost(FRAME_RECORD, FRAME_ROUNDS);
  console.log(
    `one ${FRAME_RECORD / 1024} KiB record, sealed and opened (${FRAME_ROUNDS} times): ${frame.toFixed(1)} µs, ${(FRAME_RECORD / MIB / (frame / 1e6)).toFixed(0)} MiB/s per core: what an encrypted hop would cost a proxy per forwarded byte`,
  );
}

if (isMainThread) await main();
else await receiver();
