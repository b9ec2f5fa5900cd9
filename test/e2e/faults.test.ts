import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPool } from '../../bench/lib/pool.js';
import { Endpoint, Manager, RidproxyError, queryProxyStatus, type Flow, type ManagerOptions } from '../../src/index.js';
import { serveEcho } from '../fixtures.js';
import { delay, digestStream, startRelay, writeRandom, type Direction, type Fault } from '../helpers.js';
import { isolatedConfig, killAll, runCli, runToExit, type CliProcess } from './cli.js';

/**
 * No input, at any moment, may crash a proxy or a listening process. A real session is recorded
 * once per role, and its byte stream gives the moments to fail at; every case then runs a fresh,
 * live client (never a replay, so this holds whatever the handshake's frames look like) and
 * breaks its connection at one of those moments. Probe storms add what scanners send.
 */

const HANDSHAKE_TIMEOUT = 1000;
/** Short enough on the targets that a stalled connection is dropped within seconds, whatever its phase. */
const TARGET_OPTIONS: ManagerOptions = { handshakeTimeout: HANDSHAKE_TIMEOUT, linkIdleTimeout: 1000, keepAliveInterval: 500 };
const CLIENT_OPTIONS: ManagerOptions = { handshakeTimeout: HANDSHAKE_TIMEOUT, dialTimeout: 2500 };
/** After this, a faulted session's managers are closed; a stall in the data phase would wait forever. */
const SESSION_DEADLINE = 3000;
/** A session must settle this long after its managers were closed, or it hung. */
const SETTLE_LIMIT = 4000;
/** A stalled connection must be closed by the target itself within this long after the stall. */
const STALL_CLEANUP = 6000;
/** How long a faulted client's close() waits for its flows to drain to a peer that may never answer. */
const CLIENT_DRAIN = 500;
const FAULTS: Fault[] = ['reset', 'halfClose', 'stall', 'garbage'];
const CASE_CONCURRENCY = 16;
const PROBE_CONCURRENCY = 50;
const MiB = 1 << 20;
const GREETING = Buffer.from('a few bytes through the whole stack');

let proxyCli: CliProcess;
let proxyEndpoint: Endpoint;
/** Registered on the proxy, serving echo: what proxy clients dial. */
let echoServer: Manager;
/** The listening process, in this test process. */
let target: Manager;
let targetEndpoint: Endpoint;
/** What escaped to the process: each one is a bug, and its text says where. */
const uncaught: string[] = [];
const onUncaught = (err: unknown): void => {
  uncaught.push(err instanceof Error ? (err.stack ?? err.message) : String(err));
};
/** Managers that live for the whole file, closed at its end. */
const managers: Manager[] = [];

/** A hop connection's path through the system: whose bytes a relay carries, and to where. */
interface Role {
  name: string;
  /** The TCP port the role's connection reaches. */
  port: () => number;
  /** Whether every phase of this connection has a short timeout on the target, so a stall must be cleaned up. */
  stallCleanup: boolean;
  /** One complete real session whose hop connection goes to 127.0.0.1:`port`; each manager it makes goes into `list`. */
  session(port: number, list: Manager[]): Promise<void>;
}

/** Sends the greeting and checks it comes back intact: a client must never receive wrong bytes. */
async function exchange(flow: Flow): Promise<void> {
  flow.on('error', () => undefined);
  await flow.writeMsg(GREETING);
  const echoed = await flow.readMsg();
  if (!echoed.equals(GREETING)) throw new Error(`the echo came back altered: ${echoed.toString('hex')}`);
  flow.end();
}

/** A new manager, to be closed by whoever owns `list`. */
function made(list: Manager[], options: ManagerOptions): Manager {
  const created = new Manager(options);
  list.push(created);
  return created;
}

/** A whole session of `role` to `port`, its managers closed at the end. */
async function completeSession(role: Role, port: number): Promise<void> {
  const list: Manager[] = [];
  try {
    await role.session(port, list);
  } finally {
    await Promise.all(list.map((m) => m.close()));
  }
}

const dialThroughProxy: Role = {
  name: 'client dialing through the proxy',
  port: () => proxyEndpoint.port,
  stallCleanup: true,
  async session(port, list) {
    const client = made(list, CLIENT_OPTIONS);
    await exchange(await client.dial(new Endpoint('127.0.0.1', port, echoServer.routingId, proxyEndpoint.routingId)));
  },
};
const registerOnProxy: Role = {
  name: 'server registering on the proxy',
  port: () => proxyEndpoint.port,
  // A registered connection is not idle: the proxy keeps it until its 30 s keepalive timeout.
  stallCleanup: false,
  async session(port, list) {
    const server = made(list, TARGET_OPTIONS);
    await server.proxyListen('main', new Endpoint('127.0.0.1', port, proxyEndpoint.routingId));
    serveEcho(server);
    const client = made(list, CLIENT_OPTIONS);
    await exchange(await client.dial(new Endpoint(proxyEndpoint.host, proxyEndpoint.port, server.routingId, proxyEndpoint.routingId)));
  },
};
const dialListener: Role = {
  name: 'client dialing the listening process',
  port: () => targetEndpoint.port,
  stallCleanup: true,
  async session(port, list) {
    const client = made(list, CLIENT_OPTIONS);
    await exchange(await client.dial(new Endpoint('127.0.0.1', port, target.routingId)));
  },
};
const roles = [dialThroughProxy, registerOnProxy, dialListener];

interface Recording {
  /** Chunk sizes in each direction, in order, as the relay saw them. */
  chunks: Record<Direction, number[]>;
  /** The first chunk the client sent: a real handshake's opening, whatever the protocol version. */
  opening: Buffer;
}

/** Runs one real session of `role` through a relay that notes every chunk (the closing frames included). */
async function record(role: Role): Promise<Recording> {
  const chunks: Record<Direction, number[]> = { toTarget: [], fromTarget: [] };
  let opening: Buffer | undefined;
  const relay = await startRelay(role.port(), {
    tap: (direction, chunk) => {
      if (direction === 'toTarget') opening ??= Buffer.from(chunk);
      chunks[direction].push(chunk.length);
      return chunk;
    },
  });
  try {
    await completeSession(role, relay.port);
  } finally {
    await relay.close();
  }
  return { chunks, opening: opening! };
}

/**
 * Where to fail, in bytes into one direction's stream: every chunk boundary, one byte into each
 * chunk, and inside larger chunks (a frame header split, a TLS record cut in half).
 */
function cutPoints(sizes: number[], withinChunks: boolean): number[] {
  const cuts = new Set<number>();
  let offset = 0;
  for (const size of sizes) {
    cuts.add(offset);
    if (withinChunks) {
      cuts.add(offset + 1);
      if (size >= 16) for (const fraction of [0.25, 0.5, 0.75]) cuts.add(offset + Math.floor(size * fraction));
      if (size >= 4) cuts.add(offset + size - 1);
    }
    offset += size;
  }
  return [...cuts].filter((cut) => cut < offset).sort((a, b) => a - b);
}

interface CaseResult {
  faulted: boolean;
  succeeded: boolean;
  error?: unknown;
  hung: boolean;
  /** For a stall: whether the target closed the held connection by itself. */
  targetClosedStall?: boolean;
}

/** One live session of `role` through a relay that inflicts `fault` after `bytes` in `direction`. */
async function faultCase(role: Role, direction: Direction, bytes: number, fault: Fault): Promise<CaseResult> {
  let faulted = false;
  let stallClosed: Promise<boolean> | undefined;
  const relay = await startRelay(role.port(), {
    faultAfter: {
      direction,
      bytes,
      fault,
      onFault: ({ outbound }) => {
        faulted = true;
        if (fault === 'stall') {
          // The relay's side is half-open, so a target hanging up shows as 'end' (FIN) or 'close' (RST).
          const closed = new Promise<boolean>((resolve) => {
            outbound.once('end', () => resolve(true));
            outbound.once('close', () => resolve(true));
          });
          stallClosed = Promise.race([closed, delay(STALL_CLEANUP).then(() => false)]);
        }
      },
    },
  });
  const list: Manager[] = [];
  const outcome = role.session(relay.port, list).then(
    (): { succeeded: boolean; error?: unknown } => ({ succeeded: true }),
    (error: unknown) => ({ succeeded: false, error }),
  );
  await Promise.race([outcome, delay(SESSION_DEADLINE)]);
  // A stall may come only with the client's closing frames (or keepalive replies), so the client
  // closes first; the relay holds the target's side open whatever the client does, and the time
  // the target takes to drop it counts from the stall.
  await Promise.all(list.map((m) => m.close({ drainTimeout: CLIENT_DRAIN })));
  const targetClosedStall = direction === 'toTarget' && role.stallCleanup ? await stallClosed : undefined;
  const settled = await Promise.race([outcome, delay(SETTLE_LIMIT).then(() => undefined)]);
  await relay.close();
  return { faulted, succeeded: settled?.succeeded ?? false, error: settled?.error, hung: settled === undefined, targetClosedStall };
}

/** Keeps 4 MiB echo round trips going on each endpoint until `phase` ends; each loop settles to how many came back intact. */
async function transfersDuring<T>(endpoints: Endpoint[], phase: () => Promise<T>): Promise<{ result: T; transfers: Array<PromiseSettledResult<number>> }> {
  let done = false;
  const loops = endpoints.map(async (endpoint) => {
    const client = made(managers, CLIENT_OPTIONS);
    let count = 0;
    do {
      const flow = await client.dial(endpoint, { timeout: 10_000 });
      const [sent, received] = await Promise.all([writeRandom(flow, 4 * MiB), digestStream(flow)]);
      if (received.bytes !== 4 * MiB || received.sha256 !== sent) throw new Error(`transfer ${count} came back as ${received.bytes} different bytes`);
      count++;
    } while (!done);
    await client.close();
    return count;
  });
  let result: T;
  try {
    result = await phase();
  } finally {
    done = true;
  }
  return { result, transfers: await Promise.allSettled(loops) };
}

/** How many transfers each loop carried, or why it stopped. */
function describeTransfers(transfers: Array<PromiseSettledResult<number>>): string {
  return transfers.map((t) => (t.status === 'fulfilled' ? `${t.value} x 4 MiB` : `failed: ${String(t.reason)}`)).join(' and ');
}

/** Every loop ran to the end of its phase with at least one transfer, all intact. */
function expectTransfers(transfers: Array<PromiseSettledResult<number>>): void {
  expect(transfers.map((t) => (t.status === 'rejected' ? String(t.reason) : 'ok'))).toEqual(transfers.map(() => 'ok'));
  for (const t of transfers) if (t.status === 'fulfilled') expect(t.value).toBeGreaterThan(0);
}

async function proxyConnections(): Promise<number> {
  return (await queryProxyStatus(proxyEndpoint, { timeout: 5000 })).connections;
}

function assertAlive(): void {
  expect(proxyCli.child.exitCode, `the proxy exited; its stderr:\n${proxyCli.stderr()}`).toBeNull();
  expect(proxyCli.child.signalCode, `the proxy was killed; its stderr:\n${proxyCli.stderr()}`).toBeNull();
  expect(proxyCli.stderr()).not.toMatch(/unhandled|uncaught/i);
  expect(uncaught).toEqual([]);
}

let baselineConnections = 0;
const recordings = new Map<Role, Recording>();

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  const config = isolatedConfig();
  const identity = join(config, 'proxy-identity.pem');
  expect((await runToExit(['keygen', '--out', identity], config)).code).toBe(0);
  proxyCli = runCli(
    ['start', '--listen', '127.0.0.1:0', '--identity', identity, '--handshake-timeout', String(HANDSHAKE_TIMEOUT), '--idle-timeout', '1000', '--log-level', 'warn'],
    { config },
  );
  proxyEndpoint = Endpoint.parse(await proxyCli.firstLine);
  echoServer = made(managers, TARGET_OPTIONS);
  await echoServer.proxyListen('main', proxyEndpoint);
  serveEcho(echoServer);
  target = made(managers, TARGET_OPTIONS);
  targetEndpoint = Endpoint.parse(await target.listen('127.0.0.1:0'));
  serveEcho(target);
  baselineConnections = await proxyConnections();
  for (const role of roles) recordings.set(role, await record(role));
});

afterAll(async () => {
  await Promise.all(managers.map((m) => m.close()));
  await killAll();
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
});

describe('faults at every step of a real session', () => {
  for (const role of roles) {
    it(`a ${role.name}: reset, half-close, stall and garbage at every cut point, both ways`, async () => {
      const { chunks } = recordings.get(role)!;
      const cases = [
        ...cutPoints(chunks.toTarget, true).map((bytes) => ({ direction: 'toTarget' as const, bytes })),
        ...cutPoints(chunks.fromTarget, false).map((bytes) => ({ direction: 'fromTarget' as const, bytes })),
      ].flatMap((cut) => FAULTS.map((fault) => ({ ...cut, fault })));
      const results: Array<CaseResult & (typeof cases)[number]> = [];
      const endpoints = [new Endpoint(proxyEndpoint.host, proxyEndpoint.port, echoServer.routingId, proxyEndpoint.routingId), targetEndpoint];
      const { transfers } = await transfersDuring(endpoints, () =>
        runPool(cases.length, CASE_CONCURRENCY, async (index) => {
          results.push({ ...cases[index], ...(await faultCase(role, cases[index].direction, cases[index].bytes, cases[index].fault)) });
        }),
      );
      const untyped = results.filter((r) => r.error !== undefined && !(r.error instanceof RidproxyError && typeof r.error.code === 'string'));
      const codes = new Map<string, number>();
      for (const r of results) if (r.error instanceof RidproxyError) codes.set(r.error.code, (codes.get(r.error.code) ?? 0) + 1);
      console.log(
        `${role.name}: ${cutPoints(chunks.toTarget, true).length} cuts to the target (${chunks.toTarget.join('+')} bytes), ` +
          `${cutPoints(chunks.fromTarget, false).length} back (${chunks.fromTarget.join('+')}), x${FAULTS.length} faults = ${results.length} cases; ` +
          `${results.filter((r) => r.faulted).length} faulted, ${results.filter((r) => r.succeeded).length} sessions still succeeded; ` +
          `client errors ${JSON.stringify(Object.fromEntries(codes))}; transfers alongside: ${describeTransfers(transfers)}`,
      );
      // First whether the targets survived: a dead proxy also fails everything below.
      assertAlive();
      expectTransfers(transfers);
      expect(results).toHaveLength(cases.length);
      expect(untyped.map((r) => `${r.direction} ${r.bytes} ${r.fault}: ${String(r.error)}`)).toEqual([]);
      expect(results.filter((r) => r.hung).map((r) => `${r.direction} ${r.bytes} ${r.fault}`)).toEqual([]);
      if (role.stallCleanup) {
        const lingering = results.filter((r) => r.fault === 'stall' && r.direction === 'toTarget' && r.faulted && r.targetClosedStall !== true);
        expect(lingering.map((r) => r.bytes)).toEqual([]);
      }
      // A fault past the session's end never happens; all others must have.
      expect(results.filter((r) => r.faulted).length).toBeGreaterThan(results.length * 0.8);
      // The target still serves a fresh session, directly.
      await completeSession(role, role.port());
    });
  }
});

/** Connects to `port`, runs `probe`, and resolves once the socket closed; rejects if the target kept it open. */
function tcpProbe(port: number, probe: (socket: Socket) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    // Junk must be hung up on within the handshake timeout: a target that keeps it open leaks.
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the target at port ${port} kept a probe open`));
    }, HANDSHAKE_TIMEOUT + 3000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.on('connect', () => probe(socket));
    socket.resume();
  });
}

interface Probe {
  name: string;
  count: number;
  run(port: number): Promise<void>;
}

const probes: Probe[] = [
  { name: 'connect and close', count: 3000, run: (port) => tcpProbe(port, (s) => s.end()) },
  {
    name: 'one byte then reset',
    count: 1000,
    // At once, a tick later, and once the target spoke: the reset races the target's reply to the byte.
    run: (port) => {
      const timing = Math.floor(Math.random() * 3);
      return tcpProbe(port, (s) => {
        if (timing === 2) s.once('data', () => s.resetAndDestroy());
        s.write(randomBytes(1), () => {
          if (timing === 0) s.resetAndDestroy();
          else if (timing === 1) setImmediate(() => s.resetAndDestroy());
        });
      });
    },
  },
  { name: 'HTTP request', count: 200, run: (port) => tcpProbe(port, (s) => s.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: scanner\r\n\r\n')) },
  { name: 'SSH banner', count: 200, run: (port) => tcpProbe(port, (s) => s.write('SSH-2.0-OpenSSH_9.6\r\n')) },
  { name: 'random bytes', count: 300, run: (port) => tcpProbe(port, (s) => s.write(randomBytes(1 + Math.floor(Math.random() * 2048)))) },
  {
    name: 'TLS ClientHello',
    count: 100,
    run: (port) =>
      new Promise<void>((resolve) => {
        const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' });
        socket.on('error', () => undefined);
        socket.on('close', () => resolve());
      }),
  },
  {
    name: 'reset in the middle of the handshake',
    count: 300,
    // A real client's opening bytes, cut short: they pass the first checks, so the target is mid-handshake.
    run: (port) =>
      tcpProbe(port, (s) => {
        const { opening: whole } = recordings.get(dialListener)!;
        const opening = whole.subarray(0, 1 + Math.floor(Math.random() * (whole.length - 1)));
        s.once('data', () => s.write(opening, () => s.resetAndDestroy()));
      }),
  },
];


describe('probe storms', () => {
  it('scans, one-byte resets, HTTP, TLS, SSH, random bytes and mid-handshake resets crash neither target', async () => {
    expect(recordings.get(dialListener)!.opening.length).toBeGreaterThan(1);
    const jobs = [proxyEndpoint.port, targetEndpoint.port].flatMap((port) => probes.flatMap((probe) => Array.from({ length: probe.count }, () => ({ probe, port }))));
    // Shuffled, so every kind overlaps with every other on both targets.
    for (let i = jobs.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [jobs[i], jobs[j]] = [jobs[j], jobs[i]];
    }
    let peakConnections = 0;
    const endpoints = [new Endpoint(proxyEndpoint.host, proxyEndpoint.port, echoServer.routingId, proxyEndpoint.routingId), targetEndpoint];
    const { result, transfers } = await transfersDuring(endpoints, async () => {
      const storm = runPool(jobs.length, PROBE_CONCURRENCY, (index) => jobs[index].probe.run(jobs[index].port));
      const watch = (async () => {
        for (let finished = false; !finished; ) {
          finished = await Promise.race([storm.then(() => true), delay(500).then(() => false)]);
          // A proxy that died answers no status; assertAlive below says so more clearly than this would.
          peakConnections = Math.max(peakConnections, await proxyConnections().catch(() => 0));
        }
      })();
      await watch;
      return storm;
    });
    console.log(
      `probe storm: ${jobs.length} probes (${probes.map((p) => `${p.count} ${p.name}`).join(', ')}, per target); ` +
        `${result.failures} kept open; peak proxy connections ${peakConnections} (baseline ${baselineConnections}); transfers alongside: ${describeTransfers(transfers)}`,
    );
    assertAlive();
    expectTransfers(transfers);
    expect(result.firstError).toBeUndefined();
    expect(result.completed).toBe(jobs.length);
  });
});

describe('afterwards', () => {
  it('the proxy is alive, back to its connections before the faults, and still registers and routes', async () => {
    let connections = Infinity;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && (connections = await proxyConnections()) > baselineConnections) await delay(250);
    expect(connections).toBe(baselineConnections);
    const status = await runToExit(['status', '--json', proxyEndpoint.toString()], isolatedConfig());
    expect(status.code).toBe(0);
    expect((JSON.parse(status.stdout) as { servers: Array<{ routingId: string }> }).servers.map((s) => s.routingId)).toEqual([echoServer.routingId.toString()]);
    for (const role of roles) await completeSession(role, role.port());
    assertAlive();
  });
});
