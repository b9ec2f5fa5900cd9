import type { PathName } from '../harness/args.js';
import { WorkerSlot } from '../harness/children.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import { openTopology, type Context } from '../paths/topology.js';
import type { BesideLoad, ClientApi, InteractiveResult } from '../workers/client.js';
import { delay } from '../lib/payload.js';
import { runRounds } from './rounds.js';

export type BulkLoad = Exclude<BesideLoad, 'none'>;
export const BULK_LOADS: readonly BulkLoad[] = ['upload', 'download'];
/** The figure of issue 12's target: how much a bulk flow on the same VC adds to the ping-pong's p99. */
export function addedP99Metric(load: BulkLoad): string {
  return `added p99 beside bulk ${load} (beside - alone)`;
}
const MESSAGE = 64;
/** The chain and ssh add nothing here the one-process relay does not show; library-plain only drops the sealing. */
const INTERACTIVE_PATHS: readonly PathName[] = ['direct', 'relay', 'library', 'library-plain', 'cli'];

/**
 * Interactive beside bulk: a 64-byte ping-pong flow's round trips alone, then while a bulk upload
 * and then a bulk download run on the same VC (library: one Manager opens both flows, so they share
 * the VC and both hop connections; cli: both local connections are flows on `connect`'s VC; TCP
 * paths: separate connections, a reference). What a bulk flow adds to the p99 says whether the
 * VC's scheduling and windows keep an interactive flow from queueing behind bulk data.
 */
export async function interactiveScenario(ctx: Context): Promise<ScenarioReport> {
  const roundTrips = ctx.options.quick ? 500 : 10_000;
  const warmup = ctx.options.quick ? 100 : 200;
  const settleMs = 300;
  // Beside bulk the CLI's round trips took 60-80 ms each on a loaded machine: bound each condition by time too.
  const maxMs = ctx.options.quick ? 5_000 : 20_000;
  const fewest = new Map<string, number>();
  const table = new SampleTable();
  const detail = new SampleTable();
  const skipped: Skip[] = [];
  const paths = ctx.options.paths.filter((p) => INTERACTIVE_PATHS.includes(p));
  const topo = await openTopology(ctx, paths);
  skipped.push(...topo.skipped);
  const client = new WorkerSlot<ClientApi>('client');
  // For a TCP target the bulk flow runs in a process of its own: in the ping-pong's process every
  // round trip would wait for that process's turns of bulk writes, which is the load generator's
  // cost, not the path's (direct TCP then added 138-212 ms at p99).
  const loader = new WorkerSlot<ClientApi>('client', 'client (bulk beside)');
  const ms = (us: number): number => us / 1000;
  try {
    // 500 ms per untimed round trip beside a bulk flow would be a broken path; bound the call by that.
    const timeout = 15_000 + settleMs + warmup * 500 + maxMs;
    await runRounds(ctx, topo.routes, skipped, {
      measure: async (route, round) => {
        const loads: BesideLoad[] = ['none', ...BULK_LOADS];
        // Rotate which condition runs first, so none always gets the coldest or the warmest start.
        const order = loads.map((_, i) => loads[(i + round) % loads.length]);
        const results = new Map<BesideLoad, InteractiveResult>();
        for (const beside of order) {
          let r: InteractiveResult;
          if (beside === 'none' || route.target.kind !== 'tcp') {
            r = await client.call('interactive', { target: route.target, beside, roundTrips, warmup, size: MESSAGE, settleMs, maxMs }, timeout);
          } else {
            await loader.call('startLoad', { target: route.target, load: beside }, 15_000);
            let alone: InteractiveResult;
            try {
              await delay(settleMs);
              alone = await client.call('interactive', { target: route.target, beside: 'none', roundTrips, warmup, size: MESSAGE, settleMs, maxMs }, timeout);
            } catch (err) {
              await loader.call('stopLoad', {}, 15_000).catch(() => undefined);
              throw err;
            }
            const { gbps } = await loader.call('stopLoad', {}, 15_000);
            if (!(gbps > 0)) throw new Error(`the bulk ${beside} beside the ping-pong moved nothing`);
            r = { ...alone, bulkGbps: gbps };
          }
          results.set(beside, r);
          fewest.set(route.path, Math.min(fewest.get(route.path) ?? roundTrips, r.measured));
        }
        const alone = results.get('none')!;
        table.add(route.path, 'ping-pong p50 alone', 'ms', ms(alone.p50Us));
        table.add(route.path, 'ping-pong p99 alone', 'ms', ms(alone.p99Us));
        for (const load of BULK_LOADS) {
          const r = results.get(load)!;
          table.add(route.path, `ping-pong p50 beside bulk ${load}`, 'ms', ms(r.p50Us));
          table.add(route.path, `ping-pong p99 beside bulk ${load}`, 'ms', ms(r.p99Us));
          table.add(route.path, addedP99Metric(load), 'ms', ms(r.p99Us - alone.p99Us));
          detail.add(route.path, `bulk ${load} rate beside the ping-pong`, 'Gbit/s', r.bulkGbps);
        }
      },
    });
  } finally {
    client.kill();
    loader.kill();
    topo.close();
  }
  const rates = detail
    .rows()
    .map((row) => `${row.path} ${row.metric.replace(' rate beside the ping-pong', '')} ${row.median.toFixed(2)}`)
    .join(', ');
  return {
    name: 'interactive',
    title: `interactive beside bulk: ${MESSAGE}-byte ping-pong alone and beside a bulk flow on the same VC (${ctx.options.rounds} rounds)`,
    rows: table.rows().sort((a, b) => a.metric.localeCompare(b.metric)),
    detail: detail.rows(),
    skipped,
    notes: [
      `${roundTrips.toLocaleString('en-US')} round trips per condition after ${warmup} untimed ones, or as many as fit in ${maxMs / 1000} s (fewest timed in any condition: ${[...fewest].map(([path, n]) => `${path} ${n}`).join(', ') || 'n/a'}); the bulk flow starts ${settleMs} ms before them and runs until they end`,
      'library and library-plain: both flows from one Manager in one process (one VC, the same hop connections); cli: two local connections, two flows on connect\'s VC, the bulk one from a second client process; direct and relay: two TCP connections from two processes (a reference)',
      `bulk rate while the ping-pong ran, Gbit/s (median; as its sender saw it; from a second process: over the settle time too): ${rates || 'n/a'}`,
    ],
  };
}
