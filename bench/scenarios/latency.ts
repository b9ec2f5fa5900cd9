import { WorkerSlot } from '../harness/children.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import { openTopology, type Context } from '../paths/topology.js';
import type { ClientApi, LatencyResult } from '../workers/client.js';
import { runRounds } from './rounds.js';

export const P50_ADDED = 'p50 added over direct';
export const P99_ADDED = 'p99 added over direct';
const MESSAGE = 64;

/**
 * Request/response latency: one stream, a 64-byte message echoed back, the next sent only when
 * the whole echo arrived. Added latency is the path's percentile minus direct TCP's in the same
 * round, so both saw the same machine load.
 */
export async function latencyScenario(ctx: Context): Promise<ScenarioReport> {
  const roundTrips = ctx.options.quick ? 2_000 : 20_000;
  const warmup = ctx.options.quick ? 200 : 1_000;
  const table = new SampleTable();
  const skipped: Skip[] = [];
  const topo = await openTopology(ctx, ctx.options.paths);
  skipped.push(...topo.skipped);
  const client = new WorkerSlot<ClientApi>('client');
  let thisRound = new Map<string, LatencyResult>();
  try {
    await runRounds(ctx, topo.routes, skipped, {
      measure: async (route) => {
        // 5 ms per round trip would be a broken path; bound the call by that.
        const r = await client.call('latency', { target: route.target, roundTrips, warmup, size: MESSAGE }, 10_000 + (roundTrips + warmup) * 5);
        thisRound.set(route.path, r);
        table.add(route.path, 'p50 round trip', 'µs', r.p50Us);
        table.add(route.path, 'p99 round trip', 'µs', r.p99Us);
      },
      afterRound: () => {
        const direct = thisRound.get('direct');
        if (direct) {
          for (const [path, r] of thisRound) {
            table.add(path, P50_ADDED, 'µs', r.p50Us - direct.p50Us);
            table.add(path, P99_ADDED, 'µs', r.p99Us - direct.p99Us);
          }
        }
        thisRound = new Map();
      },
    });
  } finally {
    client.kill();
    topo.close();
  }
  const notes = [`${roundTrips.toLocaleString('en-US')} round trips of ${MESSAGE} B per round after ${warmup} untimed ones; ratios of added latency compare added with added`];
  if (!ctx.options.paths.includes('direct')) notes.push('direct was not run, so no added latency');
  return {
    name: 'latency',
    title: `request/response latency, ${MESSAGE}-byte messages, one stream (${ctx.options.rounds} rounds)`,
    rows: table.rows().sort((a, b) => a.metric.localeCompare(b.metric)),
    detail: [],
    skipped,
    notes,
  };
}
