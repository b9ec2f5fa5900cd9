import { Worker } from '../harness/children.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import { slope } from '../harness/stats.js';
import type { MemorySample } from '../lib/memory.js';
import { startRelay } from '../paths/baselines.js';
import { startLibraryPath } from '../paths/library.js';
import type { Context } from '../paths/topology.js';
import type { ClientApi } from '../workers/client.js';
import type { ProxyApi } from '../workers/proxy.js';
import type { SinkApi } from '../workers/sink.js';

/** One metric for both, so the table shows the library's per-VC cost as a ratio of the relay's per-connection cost. */
export const PER_IDLE_VC = 'RSS per idle VC (relay: per conn)';
export const PER_SERVER = 'proxy RSS per registered server';
const KiB = 1024;
const MiB = 2 ** 20;
/** Open files per process on this machine (soft = hard, cannot be raised); each process stays well under it. */
const FD_LIMIT = 20_000;
const SERVERS_PER_PROCESS = 2_500;
const CLIENT_MANAGERS = 8;
/** Idle VCs / connections are added in this many equal steps, RSS read after each. */
const STEPS = 4;
/** More than the window bytes the proxy reserves per VC (the opener's window plus its largest allowed window). */
const VC_BUDGET = 16 * MiB;

function message(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

/**
 * Baseline: RSS of the one-process plain relay per idle relayed connection (it holds two sockets
 * each). Measured once: RSS does not shrink when connections close, so rounds would not repeat.
 */
async function relayPerConnection(ctx: Context, table: SampleTable, detail: SampleTable, count: number): Promise<void> {
  if (2 * count + 100 > FD_LIMIT) throw new Error(`${count} relayed connections need ${2 * count} descriptors in the relay`);
  const workers: Array<{ kill(): void }> = [];
  try {
    const sink = await Worker.start<SinkApi>('sink', 'tcp sink');
    workers.push(sink);
    const { port } = await sink.call('listenTcp', {}, 10_000);
    const relay = await startRelay('relay', port);
    workers.push(relay.worker);
    const client = await Worker.start<ClientApi>('client');
    workers.push(client);
    const readings = await stepwise(count, () => relay.worker.call('memory', {}, 10_000), async (n) => {
      const held = await client.call('holdIdle', { target: { kind: 'tcp', host: '127.0.0.1', port: relay.port }, count: n, concurrency: 100 }, 120_000);
      if (held.failures > 0) throw new Error(`${held.failures} connections failed; first: ${held.firstError}`);
    });
    ctx.log(`  relay: ${count} idle relayed connections, RSS ${describe(readings)}`);
    table.add('relay', PER_IDLE_VC, 'KiB', perUnit(readings, 'rssBytes'));
    detail.add('relay', 'heap per idle relayed connection', 'KiB', perUnit(readings, 'heapUsedBytes'));
  } finally {
    workers.forEach((w) => w.kill());
  }
}

/**
 * Library: proxy RSS with `servers` registered idle servers (Managers spread over sink processes,
 * 2,500 each, so no process nears the open-files limit), then per idle VC: a few client Managers
 * each hold VCs (one flow each, after a 1-byte echo) to many of those servers.
 */
async function libraryMemory(ctx: Context, table: SampleTable, detail: SampleTable, servers: number, vcs: number): Promise<void> {
  if (servers + CLIENT_MANAGERS + 100 > FD_LIMIT) throw new Error(`${servers} servers would leave the proxy too close to ${FD_LIMIT} open files`);
  const workers: Array<{ kill(): void }> = [];
  try {
    // The defaults cap connections from one address (all of ours are from 127.0.0.1) and in
    // total below what this scenario registers, and the window budgets (commitments, not memory
    // in use: idle VCs buffer nothing; in total, per connection, per client routing id and per
    // source address) admit only a few hundred VCs; raise only those caps.
    const cap = servers + CLIENT_MANAGERS + 100;
    const budget = vcs * VC_BUDGET;
    const limits = {
      maxConnections: cap,
      maxConnectionsPerAddress: cap,
      maxRegistrations: cap,
      maxVcsPerConnection: vcs,
      bufferBudget: budget,
      connectionBufferBudget: budget,
      identityBufferBudget: budget,
      addressBufferBudget: budget,
    };
    // startLibraryPath registers one server of its own; it is counted.
    const path = await startLibraryPath(limits);
    workers.push(path);
    const proxy: Worker<ProxyApi> = path.proxy;
    const empty = await proxy.call('memory', {}, 10_000);
    const endpoints: string[] = [path.route.target.kind === 'ridproxy' ? path.route.target.endpoint : ''];
    const remaining = servers - 1;
    const processes = Math.ceil(remaining / SERVERS_PER_PROCESS);
    const sinks = await Promise.all(Array.from({ length: processes }, (_, i) => Worker.start<SinkApi>('sink', `idle servers ${i + 1}`)));
    workers.push(...sinks);
    const started = Date.now();
    const lists = await Promise.all(
      sinks.map((sink, i) => {
        const count = Math.min(SERVERS_PER_PROCESS, remaining - i * SERVERS_PER_PROCESS);
        return sink.call('listenRidproxy', { proxyEndpoint: path.proxyEndpoint, count, concurrency: 50 }, 60_000 + count * 50);
      }),
    );
    for (const list of lists) endpoints.push(...list.endpoints);
    const registered = await proxy.call('memory', {}, 10_000);
    ctx.log(`  library: ${registered.stats.registrations} servers registered in ${((Date.now() - started) / 1000).toFixed(1)} s, proxy RSS ${(registered.rssBytes / MiB).toFixed(1)} MiB`);
    table.add('library', `proxy RSS, ${servers.toLocaleString('en-US')} idle servers`, 'MiB', registered.rssBytes / MiB);
    table.add('library', PER_SERVER, 'KiB', (registered.rssBytes - empty.rssBytes) / servers / KiB);
    detail.add('library', 'proxy heap per registered server', 'KiB', (registered.heapUsedBytes - empty.heapUsedBytes) / servers / KiB);

    const client = await Worker.start<ClientApi>('client');
    workers.push(client);
    let next = 0;
    const readings = await stepwise(vcs, () => proxy.call('memory', {}, 10_000), async (n) => {
      const batch = endpoints.slice(next, next + n);
      next += n;
      const held = await client.call(
        'holdIdle',
        { target: { kind: 'ridproxy-many', endpoints: batch, managers: CLIENT_MANAGERS / STEPS }, count: n, concurrency: 100 },
        60_000 + n * 50,
      );
      if (held.failures > 0) throw new Error(`${held.failures} VCs failed; first: ${held.firstError}`);
    });
    const last = readings[readings.length - 1][1] as MemorySample & { stats: { vcs: number } };
    ctx.log(`  library: ${last.stats.vcs} idle VCs, proxy RSS ${describe(readings)}`);
    table.add('library', PER_IDLE_VC, 'KiB', perUnit(readings, 'rssBytes'));
    detail.add('library', 'proxy heap per idle VC', 'KiB', perUnit(readings, 'heapUsedBytes'));
  } finally {
    workers.forEach((w) => w.kill());
  }
}

/** Adds `total` units in STEPS equal batches, reading memory before and after each batch. */
async function stepwise<M extends MemorySample>(total: number, read: () => Promise<M>, add: (n: number) => Promise<void>): Promise<Array<[number, M]>> {
  const readings: Array<[number, M]> = [[0, await read()]];
  let done = 0;
  for (let step = 0; step < STEPS; step++) {
    const n = Math.round(((step + 1) * total) / STEPS) - done;
    await add(n);
    done += n;
    readings.push([done, await read()]);
  }
  return readings;
}

/** KiB per unit: the slope over all readings, so heap space left free by setup and absorbed by the first batch weighs less. */
function perUnit(readings: ReadonlyArray<[number, MemorySample]>, field: keyof MemorySample): number {
  return slope(readings.map(([n, m]) => [n, m[field]] as const)) / KiB;
}

function describe(readings: ReadonlyArray<[number, MemorySample]>): string {
  return `${readings.map(([, m]) => (m.rssBytes / MiB).toFixed(1)).join(' -> ')} MiB`;
}

export async function memoryScenario(ctx: Context): Promise<ScenarioReport> {
  const servers = ctx.options.quick ? 1_000 : 10_000;
  const vcs = ctx.options.quick ? 500 : 5_000;
  const relayed = ctx.options.quick ? 500 : 5_000;
  const table = new SampleTable();
  const detail = new SampleTable();
  const skipped: Skip[] = [];
  const notes = [
    'measured once per run (RSS does not shrink when connections close, so repeated rounds would not be independent); RSS after two forced GCs',
    'the proxy runs with default settings except connection, registration, VC-per-connection and window-budget caps raised to admit this many servers and VCs',
    "library only: the proxy forwards VC bytes without reading them, so encryption (library vs library-plain) does not change its per-VC or per-server state",
    `idle VCs: ${vcs.toLocaleString('en-US')} VCs from ${CLIENT_MANAGERS} client Managers (sharing hop connections) to distinct registered servers, one open flow each; added in ${STEPS} steps, per-VC figure = least-squares slope of RSS over the ${STEPS + 1} readings (same for the relay's connections)`,
  ];
  if (ctx.options.quick) notes.push(`--quick registers ${servers.toLocaleString('en-US')} servers, not 10,000: the per-server figure scales`);
  const paths = ctx.options.paths;
  if (paths.includes('relay')) {
    try {
      await relayPerConnection(ctx, table, detail, relayed);
    } catch (err) {
      skipped.push({ path: 'relay', reason: message(err) });
    }
  }
  if (paths.includes('library') || paths.includes('library-plain')) {
    const problem = ctx.problems.library;
    if (problem) skipped.push({ path: 'library', reason: problem });
    else {
      try {
        await libraryMemory(ctx, table, detail, servers, vcs);
      } catch (err) {
        skipped.push({ path: 'library', reason: message(err) });
      }
    }
  }
  return {
    name: 'memory',
    title: 'memory: proxy RSS with idle registered servers and idle VCs, against the plain relay per idle connection',
    rows: table.rows(),
    detail: detail.rows(),
    skipped,
    notes,
  };
}
