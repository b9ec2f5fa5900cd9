/**
 * gRPC over ridproxy against the same grpc-js client and server over loopback TCP, for each way
 * README's "RPC over ridproxy" offers to connect them. The server runs in a process of its own,
 * the proxy in another, the client (and the hub) in this one:
 *
 *   npm run build && node dist/bench/grpc.js [--rounds N] [--quick] [--only tcp,bridge-unix,...]
 *
 * Per path and round: unary latency (sequential 64-byte calls, p50 and p99), the time for 1,000
 * unary calls issued at once (calls/s), and one server stream of 64 MiB in 64 KiB messages after an
 * untimed one of 8 MiB (MB/s, 10^6 bytes, timed by the client from the call to its end). `--window`
 * sets the clients' HTTP/2 receive window (grpc-js's `grpc-node.flow_control_window`), which bounds
 * a stream to one window per round trip. The figure is the median over rounds;
 * the path order rotates each round. Ratios are to the `tcp` path of the same run.
 */
import { connect, type ClientHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import { cpus, loadavg } from 'node:os';
import { credentials, type Client } from '@grpc/grpc-js';
import type { Manager } from '../src/index.js';
import { killAll, Worker } from './harness/children.js';
import { median, percentileOfSorted, sorted } from './harness/stats.js';
import { fmt, renderTable } from './harness/table.js';
import { http2Call, http2Unary } from './lib/grpc-http2.js';
import { BenchClient, streamRequest } from './lib/grpc-service.js';
import { loadRidproxy, loadRidproxyGrpc } from './lib/ridproxy.js';
import type { GrpcServerApi } from './workers/grpc-server.js';
import type { ProxyApi } from './workers/proxy.js';

const PATHS = {
  tcp: 'grpc-js client -> grpc-js server on 127.0.0.1 (bindAsync): the baseline',
  'bridge-unix': 'grpc-js client -> grpcBridge (Unix socket) -> proxy -> serveGrpc',
  'bridge-tcp': "grpc-js client -> grpcBridge (listen: '127.0.0.1:0') -> proxy -> serveGrpc",
  http2: 'node:http2 client (createConnection, gRPC framing by hand) -> proxy -> serveGrpc',
  reverse: 'hub: grpc-js client -> grpcBridge (reuseOnly) -> proxy -> agent: serveGrpcReverse',
} as const;
type PathName = keyof typeof PATHS;

const UNARY_PAYLOAD = Buffer.alloc(64, 0x61);
const BATCH = 1_000;
const STREAM_MESSAGE = 64 * 1024;

interface Settings {
  rounds: number;
  /** Sequential unary calls timed per round, after a tenth as many untimed. */
  calls: number;
  streamBytes: number;
  paths: PathName[];
  /** HTTP/2 receive window of the clients (stream and connection), in bytes; undefined: grpc-js's and node's default, 64 KiB. */
  window: number | undefined;
}

function parse(argv: string[]): Settings {
  const settings: Settings = { rounds: 3, calls: 2_000, streamBytes: 64 * 1024 * 1024, paths: Object.keys(PATHS) as PathName[], window: undefined };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--quick') Object.assign(settings, { rounds: 1, calls: 300, streamBytes: 8 * 1024 * 1024 });
    else if (flag === '--rounds') settings.rounds = Number(argv[++i]);
    else if (flag === '--only') settings.paths = (argv[++i] ?? '').split(',') as PathName[];
    else if (flag === '--window') settings.window = Number(argv[++i]);
    else throw new Error(`unknown flag ${flag}; usage: node dist/bench/grpc.js [--rounds N] [--quick] [--window BYTES] [--only ${Object.keys(PATHS).join(',')}]`);
  }
  const unknown = settings.paths.filter((path) => !(path in PATHS));
  if (unknown.length > 0) throw new Error(`unknown path ${unknown.join(', ')}`);
  if (!(Number.isInteger(settings.rounds) && settings.rounds > 0)) throw new Error('--rounds takes a positive integer');
  if (settings.window !== undefined && !(Number.isInteger(settings.window) && settings.window >= 65_535)) throw new Error('--window takes a byte count of 65535 or more');
  // The ratios need the baseline in the same run.
  if (!settings.paths.includes('tcp')) settings.paths.unshift('tcp');
  return settings;
}

/** What a measurement needs of a path's client. */
interface PathClient {
  unary(): Promise<void>;
  /** Resolves to the payload bytes received. */
  stream(total: number): Promise<number>;
  close(): Promise<void>;
}

function grpcJsClient(target: string, window: number | undefined, onClose: () => Promise<unknown>): PathClient {
  const options = { 'grpc.max_receive_message_length': -1, ...(window === undefined ? {} : { 'grpc-node.flow_control_window': window }) };
  const client = new BenchClient(target, credentials.createInsecure(), options) as Client & Record<string, any>;
  return {
    unary: () => new Promise((resolve, reject) => client.unary(UNARY_PAYLOAD, (err: Error | null) => (err ? reject(err) : resolve()))),
    stream: (total) =>
      new Promise((resolve, reject) => {
        let bytes = 0;
        const call = client.stream(streamRequest(total, STREAM_MESSAGE));
        call.on('data', (message: Buffer) => (bytes += message.length));
        call.on('error', reject);
        call.on('end', () => resolve(bytes));
      }),
    close: async () => {
      client.close();
      await onClose();
    },
  };
}

/** A node:http2 session over `connection`, with the receive window grpc-js would set for the same option. */
function http2Session(connection: () => Duplex, window: number | undefined): ClientHttp2Session {
  const session = connect('http://bench', { createConnection: connection, ...(window === undefined ? {} : { settings: { initialWindowSize: window } }) });
  if (window !== undefined) session.once('connect', () => session.setLocalWindowSize(window));
  return session;
}

function http2Client(session: ClientHttp2Session): PathClient {
  return {
    unary: async () => {
      await http2Unary(session, '/bench.Bench/Unary', UNARY_PAYLOAD);
    },
    stream: async (total) => {
      let bytes = 0;
      await http2Call(session, '/bench.Bench/Stream', streamRequest(total, STREAM_MESSAGE), (message) => (bytes += message.length));
      return bytes;
    },
    close: () => new Promise((resolve) => session.close(() => resolve())),
  };
}

/** Starts every selected path's processes and clients. */
async function startPaths(paths: PathName[], window: number | undefined): Promise<{ clients: Map<PathName, PathClient>; close(): Promise<void> }> {
  const clients = new Map<PathName, PathClient>();
  const managers: Manager[] = [];
  const server = (): Promise<Worker<GrpcServerApi>> => Worker.start<GrpcServerApi>('grpc-server');

  if (paths.includes('tcp')) {
    const { target } = await (await server()).call('start', { mode: 'tcp' }, 15_000);
    clients.set('tcp', grpcJsClient(target!, window, async () => undefined));
  }
  if (paths.every((path) => path === 'tcp')) return { clients, close: async () => undefined };

  const { Manager } = await loadRidproxy();
  const { grpcBridge, createConnection } = await loadRidproxyGrpc();
  const proxy = await Worker.start<ProxyApi>('proxy');
  const { endpoint: proxyEndpoint } = await proxy.call('start', {}, 15_000);
  const manager = (): Manager => {
    const created = new Manager();
    managers.push(created);
    return created;
  };

  const forward = paths.filter((path) => path === 'bridge-unix' || path === 'bridge-tcp' || path === 'http2');
  if (forward.length > 0) {
    const { endpoint } = await (await server()).call('start', { mode: 'forward', proxy: proxyEndpoint }, 15_000);
    for (const path of forward) {
      if (path === 'http2') {
        const dialer = manager();
        clients.set(path, http2Client(http2Session(() => createConnection(dialer, endpoint!), window)));
      } else {
        const bridge = await grpcBridge(manager(), endpoint!, path === 'bridge-tcp' ? { listen: '127.0.0.1:0' } : {});
        clients.set(path, grpcJsClient(bridge.target, window, () => bridge.close()));
      }
    }
  }
  if (paths.includes('reverse')) {
    const hub = manager();
    const { endpoint: hubEndpoint } = await hub.proxyListen('hub', proxyEndpoint);
    const agentArrived = hub.accept();
    const { routingId } = await (await server()).call('start', { mode: 'reverse', hub: hubEndpoint }, 15_000);
    const held = await agentArrived;
    if (held.conn.remoteRoutingId.toString() !== routingId) throw new Error('the hub heard from someone other than its agent');
    const bridge = await grpcBridge(hub, held.conn.remoteRoutingId, { reuseOnly: true });
    clients.set('reverse', grpcJsClient(bridge.target, window, () => bridge.close()));
  }
  return {
    clients,
    close: async () => {
      await Promise.all([...clients.values()].map((client) => client.close()));
      await Promise.all(managers.map((m) => m.close({ drainTimeout: 1_000 })));
    },
  };
}

interface Sample {
  p50: number;
  p99: number;
  callsPerSecond: number;
  streamMBps: number;
}

async function measure(client: PathClient, settings: Settings): Promise<Sample> {
  for (let i = 0; i < Math.ceil(settings.calls / 10); i++) await client.unary();
  const times: number[] = [];
  for (let i = 0; i < settings.calls; i++) {
    const start = process.hrtime.bigint();
    await client.unary();
    times.push(Number(process.hrtime.bigint() - start) / 1_000);
  }
  const ordered = sorted(times);

  const batchStart = process.hrtime.bigint();
  await Promise.all(Array.from({ length: BATCH }, () => client.unary()));
  const batchSeconds = Number(process.hrtime.bigint() - batchStart) / 1e9;

  await client.stream(Math.min(settings.streamBytes, 8 * 1024 * 1024));
  const streamStart = process.hrtime.bigint();
  const bytes = await client.stream(settings.streamBytes);
  const streamSeconds = Number(process.hrtime.bigint() - streamStart) / 1e9;
  if (bytes !== settings.streamBytes) throw new Error(`the stream delivered ${bytes} bytes of ${settings.streamBytes}`);

  return { p50: percentileOfSorted(ordered, 50), p99: percentileOfSorted(ordered, 99), callsPerSecond: BATCH / batchSeconds, streamMBps: bytes / 1e6 / streamSeconds };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took more than ${ms / 1000} s`)), ms);
    }),
  ]);
}

async function main(settings: Settings): Promise<void> {
  const loadAtStart = loadavg().map((l) => l.toFixed(2));
  process.stdout.write(
    `ridproxy gRPC bench: ${settings.rounds} round(s), ${settings.calls} sequential unary calls, ${BATCH} at once, a ${settings.streamBytes / 1024 / 1024} MiB stream, client HTTP/2 window ${settings.window ?? '65535 (default)'}; ` +
      `${cpus().length} cores, Node ${process.version}, load average ${loadAtStart.join(' ')}\n`,
  );
  for (const path of settings.paths) process.stdout.write(`  ${path.padEnd(12)} ${PATHS[path]}\n`);
  const { clients, close } = await startPaths(settings.paths, settings.window);
  const samples = new Map<PathName, Sample[]>(settings.paths.map((path) => [path, []]));
  try {
    for (let round = 0; round < settings.rounds; round++) {
      const order = settings.paths.map((_, i) => settings.paths[(i + round) % settings.paths.length]!);
      for (const path of order) {
        const sample = await withTimeout(measure(clients.get(path)!, settings), 300_000, `${path}, round ${round + 1}`);
        samples.get(path)!.push(sample);
        process.stderr.write(`round ${round + 1} ${path}: p50 ${fmt(sample.p50)} µs, ${fmt(sample.callsPerSecond)} calls/s, ${fmt(sample.streamMBps)} MB/s\n`);
      }
    }
  } finally {
    await close();
    killAll();
  }

  const medianOf = (path: PathName, key: keyof Sample): number => median(samples.get(path)!.map((s) => s[key]));
  const ratio = (path: PathName, key: keyof Sample): string => `${(medianOf(path, key) / medianOf('tcp', key)).toFixed(2)}x`;
  const range = (path: PathName, key: keyof Sample): string => {
    const values = samples.get(path)!.map((s) => s[key]);
    return `${fmt(Math.min(...values))}..${fmt(Math.max(...values))}`;
  };
  const header = ['path', 'unary p50 µs', 'p99 µs', `${BATCH} calls: calls/s`, 'stream MB/s', 'p50 x tcp', 'calls/s x tcp', 'MB/s x tcp'];
  const body = settings.paths.map((path) => [
    path,
    fmt(medianOf(path, 'p50')),
    fmt(medianOf(path, 'p99')),
    fmt(medianOf(path, 'callsPerSecond')),
    fmt(medianOf(path, 'streamMBps')),
    ratio(path, 'p50'),
    ratio(path, 'callsPerSecond'),
    ratio(path, 'streamMBps'),
  ]);
  process.stdout.write(`\n${renderTable(header, body, [0])}\n`);
  if (settings.rounds > 1) {
    const ranges = settings.paths.map((path) => [path, range(path, 'p50'), range(path, 'callsPerSecond'), range(path, 'streamMBps')]);
    process.stdout.write(`\nrounds min..max\n${renderTable(['path', 'unary p50 µs', 'calls/s', 'stream MB/s'], ranges, [0])}\n`);
  }
  process.stdout.write(`load average ${loadAtStart.join(' ')} at start, ${loadavg().map((l) => l.toFixed(2)).join(' ')} at end\n`);
}

let settings: Settings;
try {
  settings = parse(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
}
main(settings).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
