import { Worker } from '../harness/children.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import { delay } from '../lib/payload.js';
import { startLibraryPath, type LibraryPath } from '../paths/library.js';
import type { Context } from '../paths/topology.js';
import type { ActiveProgress, ClientApi } from '../workers/client.js';

export const ACTIVE_PEAK_OVER_BUDGET = 'peak RSS growth - configured budget';
const KiB = 1024;
const MiB = 2 ** 20;
/** Servers in the sink process; every client Manager dials each once, so VCs = clients x servers, each its own (client, server) pair. */
const SERVERS = 100;
/** Every second VC's sink never reads. */
const STALL_EVERY = 2;
/**
 * Window bytes the proxy may commit per VC: twice the 512 KiB (256 KiB each direction) a VC
 * reserves when it opens, so windows can grow but the global budget binds long before the default
 * 16 MiB per direction would.
 */
const BUDGET_PER_VC = MiB;
/**
 * What the proxy may hold beyond its budget: its per-VC state (the idle-VC target is 16 KiB, so
 * 16 MiB for 1,000 VCs), the hop connections' socket and TLS state, and the V8 heap's headroom.
 */
export const FIXED_ALLOWANCE_MIB = 64;

function message(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

/** How many of the stalled (or the non-stalled) VCs had their writer get rid of bytes between the two readings. */
function moved(before: ActiveProgress, after: ActiveProgress, stalled: boolean): { moved: number; of: number; bytes: number } {
  let count = 0;
  let of = 0;
  let bytes = 0;
  after.written.forEach((w, i) => {
    if (after.stalled[i] !== stalled) return;
    of++;
    const delta = w - (before.written[i] ?? 0);
    bytes += delta;
    if (delta > 0) count++;
  });
  return { moved: count, of, bytes };
}

/**
 * Proxy memory under load: `clients` x 100 VCs, each with one flow uploading without pause, every
 * second one to a sink that never reads. After a settle time the proxy's RSS (after forced GCs) and
 * peak RSS are compared with its RSS before the VCs opened and with its configured buffer budget,
 * beside its own accounting (window bytes reserved, bytes queued, socket backlog); the writers'
 * progress during the measurement says whether the non-stalled half kept moving.
 */
async function activeMemory(ctx: Context, table: SampleTable, notes: string[], clients: number): Promise<void> {
  const vcs = clients * SERVERS;
  const budget = vcs * BUDGET_PER_VC;
  const settleMs = ctx.options.quick ? 3_000 : 5_000;
  const measureMs = ctx.options.quick ? 2_000 : 5_000;
  const workers: Array<{ kill(): void }> = [];
  try {
    // The connection, identity and address budgets raised to the global one (every VC comes from
    // 127.0.0.1, 100 from each client), so the global budget is the one measured against.
    const cap = SERVERS + clients + 100;
    const limits = {
      maxConnections: cap,
      maxConnectionsPerAddress: cap,
      maxRegistrations: cap,
      bufferBudget: budget,
      connectionBufferBudget: budget,
      identityBufferBudget: budget,
      addressBufferBudget: budget,
    };
    // End-to-end encryption off: the proxy forwards VC bytes without reading them, so sealing only
    // takes the two cores from the proxy; startLibraryPath's own server stays registered and idle.
    const path: LibraryPath = await startLibraryPath(limits, false);
    workers.push(path);
    const { endpoints } = await path.sink.call('listenRidproxy', { proxyEndpoint: path.proxyEndpoint, count: SERVERS, concurrency: 50, encryption: false }, 60_000);
    const baseline = await path.proxy.call('memory', {}, 10_000);
    const client = await Worker.start<ClientApi>('client');
    workers.push(client);
    const opened = await client.call('openActive', { endpoints, clients, stallEvery: STALL_EVERY, encryption: false }, 60_000 + vcs * 50);
    if (opened.failures > 0) throw new Error(`${opened.failures} of ${vcs} VCs failed to open; first: ${opened.firstError}`);
    await delay(settleMs);
    const before = await client.call('activeProgress', {}, 10_000);
    const start = await path.proxy.call('memory', {}, 10_000);
    const startedAt = Date.now();
    await delay(measureMs);
    const after = await client.call('activeProgress', {}, 10_000);
    const end = await path.proxy.call('memory', {}, 10_000);
    const seconds = (Date.now() - startedAt) / 1000;
    await client.call('closeActive', {}, 60_000);
    const running = moved(before, after, false);
    const stalled = moved(before, after, true);
    const s = end.stats;
    ctx.log(`  active: ${s.vcs} VCs, proxy RSS ${(baseline.rssBytes / MiB).toFixed(1)} -> ${(end.rssBytes / MiB).toFixed(1)} MiB (peak ${(end.peakRssBytes / MiB).toFixed(1)}), reserved ${(s.reservedBytes / MiB).toFixed(1)} of ${budget / MiB} MiB, ${running.moved}/${running.of} non-stalled VCs moved`);
    const growth = end.rssBytes - baseline.rssBytes;
    const peakGrowth = end.peakRssBytes - baseline.rssBytes;
    table.add('library', 'proxy RSS before the VCs (baseline)', 'MiB', baseline.rssBytes / MiB);
    table.add('library', 'proxy RSS with the active VCs', 'MiB', end.rssBytes / MiB);
    table.add('library', 'proxy peak RSS (maxrss)', 'MiB', end.peakRssBytes / MiB);
    table.add('library', 'configured buffer budget', 'MiB', budget / MiB);
    table.add('library', 'budget in use (reserved windows)', 'MiB', s.reservedBytes / MiB);
    table.add('library', 'held in VC queues, now', 'MiB', s.queuedBytes / MiB);
    table.add('library', 'held in VC queues, peak', 'MiB', s.peakQueuedBytes / MiB);
    table.add('library', 'hop socket backlog', 'MiB', s.bufferedBytes / MiB);
    table.add('library', 'RSS growth (with VCs - baseline)', 'MiB', growth / MiB);
    table.add('library', 'RSS growth beyond bytes queued, per VC', 'KiB', (growth - s.queuedBytes - s.bufferedBytes) / vcs / KiB);
    table.add('library', ACTIVE_PEAK_OVER_BUDGET, 'MiB', (peakGrowth - budget) / MiB);
    table.add('library', 'non-stalled VCs that moved while measured', 'VCs', running.moved);
    table.add('library', 'stalled VCs that moved while measured', 'VCs', stalled.moved);
    table.add('library', 'non-stalled upload while measured', 'Gbit/s', (running.bytes * 8) / seconds / 1e9);
    table.add('library', 'proxy to servers while measured', 'Gbit/s', ((s.bytesToServers - start.stats.bytesToServers) * 8) / seconds / 1e9);
    notes.push(
      `${s.vcs.toLocaleString('en-US')} VCs open at the end (${running.of} non-stalled, ${stalled.of} stalled); ${s.vcsRejected} refused; ${running.moved} of ${running.of} non-stalled and ${stalled.moved} of ${stalled.of} stalled VCs' writers got rid of bytes during the ${seconds.toFixed(1)} s measured`,
      `target: peak RSS - baseline <= the configured budget (${BUDGET_PER_VC / MiB} MiB per VC, ${budget / MiB} MiB) + a fixed allowance of ${FIXED_ALLOWANCE_MIB} MiB (per-VC state, at most 16 KiB a VC by the idle-VC target, socket and heap headroom)`,
    );
  } finally {
    workers.forEach((w) => w.kill());
  }
}

export async function activeScenario(ctx: Context): Promise<ScenarioReport> {
  const clients = ctx.options.quick ? 2 : 10;
  const table = new SampleTable();
  const skipped: Skip[] = [];
  const notes = [
    'measured once per run, like memory (RSS does not shrink when VCs close); RSS after two forced GCs, peak RSS as getrusage reports it',
    `${SERVERS} servers in one process, ${clients} client Managers in another, each dialing every server once: ${(clients * SERVERS).toLocaleString('en-US')} VCs, one uploading flow each; every ${STALL_EVERY === 2 ? 'second' : `${STALL_EVERY}th`} sink never reads ('S'), the others read and discard ('B')`,
    'end-to-end encryption off (library-plain): the proxy forwards VC bytes without reading them, so its memory is the same either way',
  ];
  if (ctx.options.quick) notes.push(`--quick opens ${clients * SERVERS} VCs, not 1,000`);
  if (!ctx.options.paths.includes('library') && !ctx.options.paths.includes('library-plain')) {
    return { name: 'active', title: 'active VCs: proxy memory', rows: [], detail: [], skipped, notes: ['library only: not selected'] };
  }
  const problem = ctx.problems.library;
  if (problem) skipped.push({ path: 'library', reason: problem });
  else {
    try {
      await activeMemory(ctx, table, notes, clients);
    } catch (err) {
      skipped.push({ path: 'library', reason: message(err) });
    }
  }
  return {
    name: 'active',
    title: `active VCs: proxy memory with ${(clients * SERVERS).toLocaleString('en-US')} VCs uploading, half to stalled readers, against its buffer budget`,
    rows: table.rows(),
    detail: [],
    skipped,
    notes,
  };
}
