import type { PathName } from '../harness/args.js';
import { WorkerSlot } from '../harness/children.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import { openTopology, type Context } from '../paths/topology.js';
import type { ClientApi } from '../workers/client.js';
import { runRounds } from './rounds.js';

const MiB = 2 ** 20;
/** Round trips the delay relays add end to end. */
export const LONGPATH_RTTS_MS = [10, 50] as const;
const FLOWS = [1, 8] as const;
/** What users compare over a long path; relay and chain have no long variant, library-plain would only repeat library. */
const LONGPATH_PATHS: readonly PathName[] = ['direct', 'ssh', 'library', 'cli'];
const WARMUP_BYTES = 8 * MiB;

export function longpathMetric(rttMs: number, flows: number): string {
  return `${rttMs} ms RTT, ${flows} flow${flows > 1 ? 's' : ''}, up`;
}

/** Bytes per transfer: enough for every window on the way to open up, little enough that --quick stays quick. */
function bytesFor(rttMs: number, quick: boolean): number {
  if (rttMs <= 10) return (quick ? 64 : 256) * MiB;
  return (quick ? 32 : 128) * MiB;
}

/** Bounded, so a stuck path cannot hang the run (it is dropped after its first timeout): under 10 Mbit/s a path is broken here, not slow. */
function timeoutFor(bytes: number): number {
  return 30_000 + ((bytes * 8) / 10e6) * 1000;
}

/**
 * Bulk over a long path: delay relays on loopback add 10 ms and then 50 ms to the round trip of
 * every path (direct: one in front of the sink; ssh: between ssh and sshd; library and cli: one on
 * each hop to the proxy, each adding half), and the client uploads N bytes on 1 flow and on 8
 * flows of N/8, timed by the sink from its first byte to its last. Every transfer opens new flows,
 * so window growth is part of the time.
 */
export async function longpathScenario(ctx: Context): Promise<ScenarioReport> {
  const table = new SampleTable();
  const skipped: Skip[] = [];
  const paths = ctx.options.paths.filter((p) => LONGPATH_PATHS.includes(p));
  for (const rttMs of LONGPATH_RTTS_MS) {
    const bytes = bytesFor(rttMs, ctx.options.quick);
    ctx.log(`  ${rttMs} ms RTT, ${bytes / MiB} MiB per transfer`);
    const here: Skip[] = [];
    const topo = await openTopology(ctx, paths, rttMs);
    here.push(...topo.skipped);
    const client = new WorkerSlot<ClientApi>('client');
    try {
      await runRounds(ctx, topo.routes, here, {
        warmup: async (route) => {
          await client.call('bulk', { target: route.target, bytesEachWay: WARMUP_BYTES, flows: 1, upOnly: true }, timeoutFor(WARMUP_BYTES));
        },
        measure: async (route) => {
          for (const flows of FLOWS) {
            const r = await client.call('bulk', { target: route.target, bytesEachWay: bytes, flows, upOnly: true }, timeoutFor(bytes));
            table.add(route.path, longpathMetric(rttMs, flows), 'Mbit/s', r.upGbps * 1000);
          }
        },
      });
    } finally {
      client.kill();
      topo.close();
    }
    for (const skip of here) {
      // A path that cannot run at all (sshd not installed) is the same at every RTT: say so once.
      const known = skip.reason === ctx.problems[skip.path as PathName];
      if (known && skipped.some((s) => s.path === skip.path && s.reason === skip.reason)) continue;
      skipped.push(known ? skip : { path: skip.path, reason: `at ${rttMs} ms RTT: ${skip.reason}` });
    }
  }
  const sizes = LONGPATH_RTTS_MS.map((rtt) => `${bytesFor(rtt, ctx.options.quick) / MiB} MiB at ${rtt} ms`).join(', ');
  return {
    name: 'longpath',
    title: `long path: upload over ${LONGPATH_RTTS_MS.join(' and ')} ms RTT added by delay relays, 1 flow and 8 flows (${ctx.options.rounds} rounds)`,
    rows: table.rows().sort((a, b) => a.metric.localeCompare(b.metric, 'en', { numeric: true })),
    detail: [],
    skipped,
    notes: [
      `Mbit/s of an upload (${sizes}, split over the flows) timed at the sink from its first byte to its last; each transfer opens new flows (ssh: channels on its one connection; cli: flows on connect's VC; library: a new Manager, hop connections and VC), so the time includes window growth`,
      'RTT added by userspace delay relays on loopback, each its own process: direct has one in front of the sink (the whole RTT), ssh one between ssh and sshd (the whole RTT), library and cli one on each hop to the proxy (half each); the CPU the relays use is shared with the paths (2 relays for library and cli, 1 for direct and ssh)',
      'the relays add delay, not loss or a bandwidth limit, and read eagerly, so TCP under them never sees the RTT: only application windows do (ssh channel windows, ridproxy VC and flow windows); direct is limited by CPU alone, which a real network with TCP windows and congestion control would not allow',
    ],
  };
}
