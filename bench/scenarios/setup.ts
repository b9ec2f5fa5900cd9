import { WorkerSlot } from '../harness/children.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import { openTopology, type Context } from '../paths/topology.js';
import type { Route } from '../paths/types.js';
import type { ClientApi, SetupMode, SetupResult } from '../workers/client.js';
import { runRounds } from './rounds.js';

export const SETUP_METRIC = 'setups/s';
export const LIBRARY_COLD_VC = 'library (new Manager + hop + VC)';
export const LIBRARY_VC = 'library (new VC)';
export const LIBRARY_FLOWS = 'library (flows in 1 VC)';
export const LIBRARY_PLAIN_COLD_VC = 'library-plain (new Manager + hop + VC)';
export const LIBRARY_PLAIN_VC = 'library-plain (new VC)';
export const LIBRARY_PLAIN_FLOWS = 'library-plain (flows in 1 VC)';
const CLIENTS = 2;
const CONCURRENCY = 50;

/** Rate over all workers: completed setups over the span from the first start to the last end. */
function rate(results: SetupResult[]): number {
  const completed = results.reduce((n, r) => n + r.completed, 0);
  const span = Math.max(...results.map((r) => r.endMs)) - Math.min(...results.map((r) => r.startMs));
  return span > 0 ? (completed * 1000) / span : Number.NaN;
}

/**
 * Setup rate: new streams per second, each proven by a 1-byte echo and then closed, 50 at a time.
 * TCP paths: a new TCP connection each. Library, three ways: a cold start, a new Manager (so a new
 * identity, hop connection and VC) each, from two client processes; a new VC each from 50
 * Managers (25 in each of the two client processes) whose hop connections to the proxy are
 * already up, as a process's connection to the relay is made once (the VC setup rate);
 * and new flows inside one existing VC. CLI: each new local TCP connection becomes a flow on the
 * `connect` process's VC.
 */
export async function setupScenario(ctx: Context): Promise<ScenarioReport> {
  const count = ctx.options.quick ? 200 : 5_000;
  const table = new SampleTable();
  const skipped: Skip[] = [];
  const notes: string[] = [];
  // ssh -R is compared for throughput and latency (bulk, latency, longpath), not for setups.
  const topo = await openTopology(ctx, ctx.options.paths.filter((p) => p !== 'ssh'));
  skipped.push(...topo.skipped);
  const clients = Array.from({ length: CLIENTS }, (_, i) => new WorkerSlot<ClientApi>('client', `client ${i + 1}`));
  try {
    // Bounds on a call: under 500 setups/s would be a broken TCP path or flow setup; a new VC may
    // cost several ms of CPU (a TLS handshake, and for a new Manager a hop handshake and a new
    // identity's TLS context), so under 100/s.
    const timeout = 20_000 + count * 2;
    const vcTimeout = 20_000 + count * 10;

    const checked = (path: string, results: SetupResult[]): number => {
      const failures = results.reduce((n, r) => n + r.failures, 0);
      if (failures > 0) {
        const first = results.find((r) => r.firstError)?.firstError;
        notes.push(`${path}: ${failures} setups failed (first: ${first})`);
        if (failures > count / 10) throw new Error(`${failures} of ${count} setups failed; first: ${first}`);
      }
      return rate(results);
    };

    const across = async (route: Route, mode: SetupMode, total = count): Promise<number> => {
      const share = Math.ceil(total / CLIENTS);
      if (mode === 'manager') await Promise.all(clients.map((c) => c.call('prepareIdentities', { count: share }, 60_000)));
      let results: SetupResult[];
      try {
        results = await Promise.all(
          clients.map((c) => c.call('setupRate', { target: route.target, mode, count: share, concurrency: CONCURRENCY / CLIENTS }, mode === 'connection' ? timeout : vcTimeout)),
        );
      } catch (err) {
        // The other client may still be busy with this path: start the next one on fresh clients.
        clients.forEach((c) => c.kill());
        throw err;
      }
      return checked(route.path, results);
    };
    await runRounds(ctx, topo.routes, skipped, {
      warmup: async (route) => {
        if (route.target.kind !== 'ridproxy') {
          await across(route, 'connection', 200);
          return;
        }
        await across(route, 'manager', 200);
        await across(route, 'vc', 200);
      },
      measure: async (route) => {
        if (route.target.kind !== 'ridproxy') {
          table.add(route.path, SETUP_METRIC, '/s', await across(route, 'connection'));
          return;
        }
        const plain = route.path === 'library-plain';
        const flowLabel = plain ? LIBRARY_PLAIN_FLOWS : LIBRARY_FLOWS;
        table.add(plain ? LIBRARY_PLAIN_COLD_VC : LIBRARY_COLD_VC, SETUP_METRIC, '/s', await across(route, 'manager'));
        table.add(plain ? LIBRARY_PLAIN_VC : LIBRARY_VC, SETUP_METRIC, '/s', await across(route, 'vc'));
        // Flows in one VC are one process's work: a single client.
        const flows = await clients[0].call('setupRate', { target: route.target, mode: 'flow', count, concurrency: CONCURRENCY }, timeout);
        table.add(flowLabel, SETUP_METRIC, '/s', checked(flowLabel, [flows]));
      },
    });
  } finally {
    clients.forEach((c) => c.kill());
    topo.close();
  }
  return {
    name: 'setup',
    title: `setup rate: ${count.toLocaleString('en-US')} new connections / VCs / flows per round, ${CONCURRENCY} at a time (${ctx.options.rounds} rounds)`,
    rows: table.rows(),
    detail: [],
    skipped,
    notes: [
      `TCP paths and cli: new TCP connections from ${CLIENTS} client processes; library (new Manager + hop + VC): a new Manager (identity, hop connection with its handshake, VC; for library, also its TLS context and a TLS 1.3 handshake) each, from ${CLIENTS} client processes; library (new VC), the targeted row: a new VC (for library, with its TLS 1.3 handshake) each from ${CONCURRENCY} Managers (${CONCURRENCY / CLIENTS} per client process) whose hop connections to the proxy were made before the clock started; each setup ends with a 1-byte echo and a full close (for new VCs, of the whole VC)`,
      ...notes,
    ],
  };
}
