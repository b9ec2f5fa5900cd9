import type { PathName } from '../harness/args.js';
import { WorkerSlot } from '../harness/children.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import { median } from '../harness/stats.js';
import { openTopology, type Context } from '../paths/topology.js';
import type { ClientApi } from '../workers/client.js';
import { runRounds } from './rounds.js';

export const FAIRNESS_RATIO = 'beside stall / alone';
const MiB = 2 ** 20;
/** The chain adds nothing here that the one-process relay does not show. */
const FAIRNESS_PATHS: readonly PathName[] = ['direct', 'relay', 'library', 'library-plain', 'cli'];

/**
 * Fairness: a bulk upload timed alone, then beside a stalled flow (its reader never reads; its
 * writer keeps every window on the way full) on the same hop connections: for the library one
 * Manager dials both flows, so they share the VC and both hop connections; for cli both local
 * connections become flows on `connect`'s VC. For TCP paths they are separate connections, as a
 * reference. Figure: bulk rate beside the stall over bulk rate alone, per round.
 */
export async function fairnessScenario(ctx: Context): Promise<ScenarioReport> {
  const bytes = (ctx.options.quick ? 32 : 1024) * MiB;
  const settleMs = 300;
  const table = new SampleTable();
  const skipped: Skip[] = [];
  const stalledBytes = new Map<string, number[]>();
  const paths = ctx.options.paths.filter((p) => FAIRNESS_PATHS.includes(p));
  const topo = await openTopology(ctx, paths);
  skipped.push(...topo.skipped);
  const client = new WorkerSlot<ClientApi>('client');
  try {
    const timeout = 30_000 + settleMs + (bytes / 20e6) * 1000;
    await runRounds(ctx, topo.routes, skipped, {
      measure: async (route, round) => {
        // Alternate which condition runs first, so neither always gets the warmer start.
        const order = round % 2 === 0 ? [false, true] : [true, false];
        const rates = new Map<boolean, number>();
        for (const stall of order) {
          const r = await client.call('fairness', { target: route.target, bytes, stall, settleMs }, timeout);
          rates.set(stall, r.gbps);
          if (stall) stalledBytes.set(route.path, [...(stalledBytes.get(route.path) ?? []), r.stalledBytesAccepted]);
        }
        const alone = rates.get(false) ?? Number.NaN;
        const beside = rates.get(true) ?? Number.NaN;
        table.add(route.path, 'bulk alone', 'Gbit/s', alone);
        table.add(route.path, 'bulk beside a stalled flow', 'Gbit/s', beside);
        table.add(route.path, FAIRNESS_RATIO, 'ratio', beside / alone);
      },
    });
  } finally {
    client.kill();
    topo.close();
  }
  const accepted = [...stalledBytes].map(([path, values]) => `${path} ${(median(values) / MiB).toFixed(1)} MiB`);
  return {
    name: 'fairness',
    title: `fairness: ${bytes / MiB} MiB upload alone and beside a stalled flow (${ctx.options.rounds} rounds)`,
    rows: table.rows().sort((a, b) => a.metric.localeCompare(b.metric)),
    detail: [],
    skipped,
    notes: [`the stalled flow's writer got rid of (median; bounded by the windows and buffers on its way): ${accepted.join(', ') || 'n/a'}`],
  };
}
