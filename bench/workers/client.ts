/**
 * The sending end of every path: opens streams to a Target (TCP address or ridproxy endpoint) and
 * runs one measurement per call. Library state (Managers) lives only for the duration of a call,
 * except the idle VCs held for the memory scenario.
 */
import type { Duplex } from 'node:stream';
import type { Identity, Manager } from '../../src/index.js';
import { serveRpc } from '../harness/rpc.js';
import { percentileOfSorted, sorted } from '../harness/stats.js';
import { BLOCK, aggregateGbits, delay, drained, gbits, nowNs, wallMs } from '../lib/payload.js';
import { ECHO_HEADER, EchoReader, STALL_HEADER, bulkClient, bulkHeader, ended } from '../lib/peer.js';
import { runPool } from '../lib/pool.js';
import { loadRidproxy } from '../lib/ridproxy.js';
import { openStream, type Target } from '../lib/target.js';

export interface BulkParams {
  target: Target;
  /** Bytes each way in total, split evenly over the flows. */
  bytesEachWay: number;
  flows: number;
  /** Upload only: the sink sends nothing back but its receipt. */
  upOnly?: boolean;
}
export interface BulkResult {
  upGbps: number;
  /** NaN with upOnly. */
  downGbps: number;
}

export interface LatencyParams {
  target: Target;
  roundTrips: number;
  warmup: number;
  size: number;
}
export interface LatencyResult {
  p50Us: number;
  p99Us: number;
}

/**
 * connection: a new TCP connection each; manager: a new Manager (identity, hop connection) and VC
 * each; vc: a new VC each from Managers whose hop connections to the proxy are already up; flow:
 * new flows in one VC.
 */
export type SetupMode = 'connection' | 'manager' | 'vc' | 'flow';
export interface SetupParams {
  target: Target;
  mode: SetupMode;
  count: number;
  concurrency: number;
}
export interface SetupResult {
  completed: number;
  failures: number;
  firstError: string | undefined;
  startMs: number;
  endMs: number;
}

export interface FairnessParams {
  target: Target;
  bytes: number;
  stall: boolean;
  /** Time the stalled flow gets to fill every window on its way before the bulk flow starts. */
  settleMs: number;
}
export interface FairnessResult {
  gbps: number;
  /** Bytes the stalled flow's writer got rid of: with per-flow flow control, about the windows in its path. */
  stalledBytesAccepted: number;
}

/** What runs beside the ping-pong flow on the same VC (TCP paths: beside it, on another connection). */
export type BesideLoad = 'none' | 'upload' | 'download';
export interface InteractiveParams {
  target: Target;
  beside: BesideLoad;
  roundTrips: number;
  warmup: number;
  size: number;
  /** Time the bulk flow gets to fill the windows on its way before the first timed round trip. */
  settleMs: number;
  /** The timed round trips stop after this long even if fewer than roundTrips were made. */
  maxMs: number;
}
export interface InteractiveResult extends LatencyResult {
  /** Timed round trips made (fewer than asked when maxMs ran out). */
  measured: number;
  /** The bulk flow's rate while the ping-pong ran, as its sending end saw it (NaN alone). */
  bulkGbps: number;
}

export interface ActiveParams {
  /** Server endpoints; every client Manager dials each once, so each (client, server) pair is its own VC. */
  endpoints: string[];
  clients: number;
  /** VC i (client i / servers, server i % servers) is stalled when i % stallEvery === stallEvery - 1. */
  stallEvery: number;
  encryption: boolean;
}
export interface ActiveProgress {
  /** Bytes each flow's writer got rid of so far, in VC order; backpressure runs end to end, so a moving flow's count is bounded by what its sink read. */
  written: number[];
  stalled: boolean[];
}

export interface HoldParams {
  /** A TCP target (one connection per stream) or ridproxy endpoints (one VC per endpoint). */
  target: Target | { kind: 'ridproxy-many'; endpoints: string[]; managers: number };
  count: number;
  concurrency: number;
}

export interface ClientApi {
  bulk(p: BulkParams): Promise<BulkResult>;
  latency(p: LatencyParams): Promise<LatencyResult>;
  prepareIdentities(p: { count: number }): Promise<{ ready: number }>;
  setupRate(p: SetupParams): Promise<SetupResult>;
  fairness(p: FairnessParams): Promise<FairnessResult>;
  interactive(p: InteractiveParams): Promise<InteractiveResult>;
  startLoad(p: { target: Target; load: Exclude<BesideLoad, 'none'> }): Promise<{ started: true }>;
  stopLoad(p: Record<string, never>): Promise<{ gbps: number }>;
  openActive(p: ActiveParams): Promise<{ opened: number; failures: number; firstError: string | undefined }>;
  activeProgress(p: Record<string, never>): Promise<ActiveProgress>;
  closeActive(p: Record<string, never>): Promise<{ closed: number }>;
  holdIdle(p: HoldParams): Promise<{ held: number; failures: number; firstError: string | undefined }>;
  releaseIdle(p: Record<string, never>): Promise<{ released: number }>;
}

/** A Manager for one call when the target is a ridproxy endpoint, closed by the caller. */
async function managerFor(target: Target): Promise<Manager | undefined> {
  if (target.kind !== 'ridproxy') return undefined;
  const { Manager } = await loadRidproxy();
  return new Manager({ encryption: target.encryption ?? true });
}

async function closeStreams(streams: Duplex[], manager: Manager | undefined): Promise<void> {
  for (const s of streams) s.destroy();
  await manager?.close();
}

async function bulk({ target, bytesEachWay, flows, upOnly = false }: BulkParams): Promise<BulkResult> {
  const manager = await managerFor(target);
  const streams: Duplex[] = [];
  try {
    // Open every flow before any byte moves, so setup time is not in the transfer time.
    for (let i = 0; i < flows; i++) streams.push(await openStream(target, manager));
    const share = Math.floor(bytesEachWay / flows);
    const results = await Promise.all(streams.map((s) => bulkClient(s, share, upOnly ? 0 : share)));
    // Upload receipts are timed by the sink, download by us; each direction on one clock.
    return { upGbps: aggregateGbits(results.map((r) => r.up)), downGbps: aggregateGbits(results.map((r) => r.down)) };
  } finally {
    await closeStreams(streams, manager);
  }
}

/**
 * Round trips of `size` bytes on an echo stream, the next sent when the whole echo is back; the
 * timed ones stop after `maxMs` too, so a path whose round trips queue behind bulk data for tens
 * of milliseconds still ends in bounded time.
 */
async function pingPong(stream: Duplex, roundTrips: number, warmup: number, size: number, maxMs = Number.POSITIVE_INFINITY): Promise<LatencyResult & { measured: number }> {
  stream.write(ECHO_HEADER);
  const echo = new EchoReader(stream);
  const message = BLOCK.subarray(0, size);
  for (let i = 0; i < warmup; i++) await echo.roundTrip(message);
  const rtts = new Float64Array(roundTrips);
  const deadline = nowNs() + maxMs * 1e6;
  let measured = 0;
  while (measured < roundTrips && nowNs() < deadline) {
    const start = nowNs();
    await echo.roundTrip(message);
    rtts[measured++] = nowNs() - start;
  }
  const s = sorted(Array.from(rtts.subarray(0, measured)));
  return { p50Us: percentileOfSorted(s, 50) / 1000, p99Us: percentileOfSorted(s, 99) / 1000, measured };
}

async function latency({ target, roundTrips, warmup, size }: LatencyParams): Promise<LatencyResult> {
  const manager = await managerFor(target);
  const streams: Duplex[] = [];
  try {
    const stream = await openStream(target, manager);
    streams.push(stream);
    const { p50Us, p99Us } = await pingPong(stream, roundTrips, warmup, size);
    return { p50Us, p99Us };
  } finally {
    await closeStreams(streams, manager);
  }
}

/**
 * Settles a set of writers at once: `stopped` for loops that check it between writes, `settled`
 * for one waiting on a drain that will never come (a stalled reader).
 */
class StopSignal {
  stopped = false;
  readonly settled: Promise<void>;
  private release!: () => void;

  constructor() {
    this.settled = new Promise<void>((resolve) => {
      this.release = resolve;
    });
  }

  stop(): void {
    this.stopped = true;
    this.release();
  }
}

/** A writer that keeps `stream` full of BLOCKs until `stop`, honouring backpressure; `bytes` is what the stream took. */
interface Pump {
  bytes: number;
  done: Promise<void>;
}

/** Bounded by `cap` too, in case a path has no backpressure at all (then the cap shows in the result). */
function pump(stream: Duplex, stop: StopSignal, cap = Number.POSITIVE_INFINITY): Pump {
  const state: Pump = { bytes: 0, done: Promise.resolve() };
  state.done = (async () => {
    while (!stop.stopped && state.bytes < cap) {
      state.bytes += BLOCK.length;
      if (!stream.write(BLOCK)) await Promise.race([drained(stream), stop.settled]);
    }
  })().catch(() => undefined);
  return state;
}

/** Far more than any run moves: the sink sends until the stream is destroyed. */
const ENDLESS = 2 ** 50;

/** A bulk flow that runs until stopped: an endless upload, or an endless download from the sink. */
interface BulkBeside {
  /** Bytes moved so far, as this end saw them (written for an upload, read for a download). */
  moved(): number;
  stop(): Promise<void>;
}

async function startBulk(target: Target, manager: Manager | undefined, load: Exclude<BesideLoad, 'none'>): Promise<BulkBeside> {
  const stream = await openStream(target, manager);
  stream.on('error', () => undefined);
  const stop = new StopSignal();
  let upload: Pump | undefined;
  let downloaded = 0;
  if (load === 'upload') {
    stream.write(bulkHeader(0));
    upload = pump(stream, stop);
  } else {
    stream.on('data', (chunk: Buffer) => {
      downloaded += chunk.length;
    });
    stream.write(bulkHeader(ENDLESS));
  }
  return {
    moved: () => upload?.bytes ?? downloaded,
    async stop() {
      stop.stop();
      stream.destroy();
      await upload?.done;
    },
  };
}

/**
 * Ping-pong on one flow, alone or beside a bulk flow that runs the whole time: for the library
 * both come from one Manager, so they share the VC and its hop connections; a TCP target gets two
 * connections (through `connect --local` two flows on its one VC). With `beside: 'none'` the
 * ping-pong may still run beside a bulk flow of another process (startLoad).
 */
async function interactive({ target, beside, roundTrips, warmup, size, settleMs, maxMs }: InteractiveParams): Promise<InteractiveResult> {
  const manager = await managerFor(target);
  const streams: Duplex[] = [];
  let load: BulkBeside | undefined;
  try {
    if (beside !== 'none') {
      load = await startBulk(target, manager, beside);
      await delay(settleMs);
    }
    const stream = await openStream(target, manager);
    streams.push(stream);
    const before = load?.moved() ?? 0;
    const start = nowNs();
    const result = await pingPong(stream, roundTrips, warmup, size, maxMs);
    const bulkGbps = load === undefined ? Number.NaN : gbits(load.moved() - before, nowNs() - start);
    if (load !== undefined && !(bulkGbps > 0)) throw new Error(`the bulk ${beside} beside the ping-pong moved nothing`);
    return { ...result, bulkGbps };
  } finally {
    await load?.stop();
    await closeStreams(streams, manager);
  }
}

/** The bulk flow this process runs for another's ping-pong (startLoad .. stopLoad). */
let loadForOthers: { bulk: BulkBeside; startNs: number } | undefined;

/** Starts a bulk flow to a TCP target (through `connect --local`: a flow on its VC) and returns once it runs. */
async function startLoad({ target, load }: { target: Target; load: Exclude<BesideLoad, 'none'> }): Promise<{ started: true }> {
  if (loadForOthers !== undefined) throw new Error('a load is already running');
  if (target.kind !== 'tcp') throw new Error('a load from another process shares nothing with a ridproxy target: it would be its own VC');
  loadForOthers = { bulk: await startBulk(target, undefined, load), startNs: nowNs() };
  return { started: true };
}

async function stopLoad(_: Record<string, never>): Promise<{ gbps: number }> {
  const running = loadForOthers;
  if (running === undefined) throw new Error('no load is running');
  loadForOthers = undefined;
  const gbps = gbits(running.bulk.moved(), nowNs() - running.startNs);
  await running.bulk.stop();
  return { gbps };
}

/** Identities for 'manager' mode, made before the clock starts: key generation is the client's cost, not the relay's. */
let identities: Identity[] = [];

async function prepareIdentities({ count }: { count: number }): Promise<{ ready: number }> {
  const { Identity } = await loadRidproxy();
  identities = Array.from({ length: count }, () => Identity.generate());
  return { ready: identities.length };
}

/** One setup: open a stream, one 1-byte echo (proves it reaches the sink), then close it fully. */
async function oneExchange(stream: Duplex): Promise<void> {
  const done = ended(stream);
  const echo = new EchoReader(stream);
  stream.write(ECHO_HEADER);
  await echo.roundTrip(BLOCK.subarray(0, 1));
  stream.end();
  await done;
}

/**
 * One new VC from `manager`, whose hop connection to the proxy is already up: a 1-byte echo on a
 * flow, then the whole VC closed and its end awaited, so the Manager's next dial opens a new VC
 * instead of reusing this one.
 */
async function oneNewVc(manager: Manager, endpoint: string): Promise<void> {
  const flow = await manager.dial(endpoint);
  try {
    await oneExchange(flow);
  } finally {
    flow.conn.destroy();
    await flow.conn.closed;
  }
}

/** One mode's setup, with whatever it needs made before the clock starts, and what to close after the run. */
interface SetupRun {
  setup(index: number): Promise<void>;
  close(): Promise<void>;
}

async function prepareSetup({ target, mode, count, concurrency }: SetupParams): Promise<SetupRun> {
  const nothingToClose = async (): Promise<void> => undefined;
  if (mode === 'connection') return { setup: async () => oneExchange(await openStream(target, undefined)), close: nothingToClose };
  if (target.kind !== 'ridproxy') throw new Error(`${mode} mode needs a ridproxy target`);
  const { Manager } = await loadRidproxy();
  const encryption = target.encryption ?? true;
  switch (mode) {
    case 'manager': {
      if (identities.length < count) throw new Error(`prepareIdentities gave ${identities.length} identities, ${count} needed`);
      const prepared = identities;
      identities = [];
      return {
        setup: async (i) => {
          const manager = new Manager({ identity: prepared[i], encryption });
          try {
            await oneExchange(await openStream(target, manager));
          } finally {
            await manager.close();
          }
        },
        close: nothingToClose,
      };
    }
    case 'vc': {
      // One Manager per concurrent setup, each used by one setup at a time; its first VC (opened
      // and closed here) brings its hop connection up, as a process's connection to the relay.
      const managers = Array.from({ length: concurrency }, () => new Manager({ encryption }));
      const close = async (): Promise<void> => {
        await Promise.all(managers.map((m) => m.close()));
      };
      try {
        await Promise.all(managers.map((m) => oneNewVc(m, target.endpoint)));
      } catch (err) {
        await close();
        throw err;
      }
      const free = [...managers];
      return {
        setup: async () => {
          // Never empty: the pool runs `concurrency` setups at a time and each returns its Manager.
          const manager = free.pop()!;
          try {
            await oneNewVc(manager, target.endpoint);
          } finally {
            free.push(manager);
          }
        },
        close,
      };
    }
    case 'flow': {
      // The VC whose flows are measured, made before the clock starts.
      const manager = new Manager({ encryption });
      const close = (): Promise<void> => manager.close();
      try {
        await oneExchange(await openStream(target, manager));
      } catch (err) {
        await close();
        throw err;
      }
      return { setup: async () => oneExchange(await openStream(target, manager)), close };
    }
  }
}

async function setupRate(params: SetupParams): Promise<SetupResult> {
  const run = await prepareSetup(params);
  try {
    const startMs = wallMs();
    const result = await runPool(params.count, params.concurrency, run.setup);
    return { ...result, startMs, endMs: wallMs() };
  } finally {
    await run.close();
  }
}

async function fairness({ target, bytes, stall, settleMs }: FairnessParams): Promise<FairnessResult> {
  const manager = await managerFor(target);
  const streams: Duplex[] = [];
  const stop = new StopSignal();
  let stalledWriter: Pump | undefined;
  try {
    if (stall) {
      const stalled = await openStream(target, manager);
      streams.push(stalled);
      stalled.on('error', () => undefined);
      stalled.write(STALL_HEADER);
      // Keeps the stalled flow's windows full for the whole measurement.
      stalledWriter = pump(stalled, stop, 4 * bytes);
      await delay(settleMs);
    }
    const bulk = await openStream(target, manager);
    streams.push(bulk);
    const { up } = await bulkClient(bulk, bytes, 0);
    return { gbps: gbits(up.bytes, up.lastNs - up.firstNs), stalledBytesAccepted: stalledWriter?.bytes ?? 0 };
  } finally {
    stop.stop();
    await closeStreams(streams, manager);
    await stalledWriter?.done;
  }
}

/** The memory scenario's active VCs: one uploading flow each, half to sinks that never read. */
const active: { managers: Manager[]; streams: Duplex[]; pumps: Pump[]; stalled: boolean[]; stop: StopSignal } = {
  managers: [],
  streams: [],
  pumps: [],
  stalled: [],
  stop: new StopSignal(),
};

async function openActive({ endpoints, clients, stallEvery, encryption }: ActiveParams): Promise<{ opened: number; failures: number; firstError: string | undefined }> {
  const { Manager } = await loadRidproxy();
  active.stop = new StopSignal();
  active.managers = Array.from({ length: clients }, () => new Manager({ encryption }));
  const count = clients * endpoints.length;
  active.pumps = new Array<Pump>(count);
  active.stalled = Array.from({ length: count }, (_, i) => i % stallEvery === stallEvery - 1);
  const result = await runPool(count, 50, async (i) => {
    const stream = await active.managers[Math.floor(i / endpoints.length)].dial(endpoints[i % endpoints.length]);
    active.streams.push(stream);
    stream.on('error', () => undefined);
    stream.write(active.stalled[i] ? STALL_HEADER : bulkHeader(0));
    active.pumps[i] = pump(stream, active.stop);
  });
  return { opened: result.completed, failures: result.failures, firstError: result.firstError };
}

async function activeProgress(): Promise<ActiveProgress> {
  return { written: Array.from(active.pumps, (p) => p?.bytes ?? 0), stalled: active.stalled };
}

async function closeActive(): Promise<{ closed: number }> {
  active.stop.stop();
  const closed = active.streams.length;
  await closeStreams(active.streams.splice(0), undefined);
  await Promise.all(active.managers.splice(0).map((m) => m.close()));
  await Promise.all(active.pumps.splice(0).map((p) => p?.done));
  return { closed };
}

/** Streams (and their Managers) held open for the memory scenario until releaseIdle. */
const held: { streams: Duplex[]; managers: Manager[] } = { streams: [], managers: [] };

async function holdIdle({ target, count, concurrency }: HoldParams): Promise<{ held: number; failures: number; firstError: string | undefined }> {
  let open: (i: number) => Promise<Duplex>;
  if (target.kind === 'tcp') {
    open = (): Promise<Duplex> => openStream(target, undefined);
  } else if (target.kind === 'ridproxy') {
    const { Manager } = await loadRidproxy();
    const manager = new Manager({ encryption: target.encryption ?? true });
    held.managers.push(manager);
    open = (): Promise<Duplex> => openStream(target, manager);
  } else {
    const { Manager } = await loadRidproxy();
    // A few client Managers, each holding VCs to many servers: the VCs share hop connections,
    // so the proxy's growth is per VC, not per connection.
    const managers = Array.from({ length: Math.max(1, target.managers) }, () => new Manager());
    held.managers.push(...managers);
    const endpoints = target.endpoints;
    if (endpoints.length < count) throw new Error(`${count} idle VCs need as many endpoints, got ${endpoints.length}`);
    open = (i: number): Promise<Duplex> => managers[i % managers.length].dial(endpoints[i]);
  }
  const result = await runPool(count, concurrency, async (i) => {
    const stream = await open(i);
    held.streams.push(stream);
    stream.on('error', () => undefined);
    const echo = new EchoReader(stream);
    stream.write(ECHO_HEADER);
    await echo.roundTrip(BLOCK.subarray(0, 1));
  });
  return { held: result.completed, failures: result.failures, firstError: result.firstError };
}

async function releaseIdle(): Promise<{ released: number }> {
  const released = held.streams.length;
  for (const s of held.streams.splice(0)) s.destroy();
  await Promise.all(held.managers.splice(0).map((m) => m.close()));
  return { released };
}

serveRpc<ClientApi>({
  bulk,
  latency,
  prepareIdentities,
  setupRate,
  fairness,
  interactive,
  startLoad,
  stopLoad,
  openActive,
  activeProgress,
  closeActive,
  holdIdle,
  releaseIdle,
});
