import { WorkerSlot } from '../harness/children.js';
import { canMeasureCpu, cpuSeconds } from '../lib/cpu.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import { openTopology, type Context } from '../paths/topology.js';
import type { ClientApi } from '../workers/client.js';
import { runRounds } from './rounds.js';

const MiB = 2 ** 20;
export const BULK_ONE = '1 flow, up+down';
export const BULK_EIGHT = '8 flows, up+down';
export const PER_CORE_ONE = '1 flow, Gbit/s per core of the relay processes';
export const PER_CORE_EIGHT = '8 flows, Gbit/s per core of the relay processes';

/** Generous: 20 MB/s would be a broken path, not a slow one. */
function timeoutFor(bytesEachWay: number): number {
  return 30_000 + ((2 * bytesEachWay) / 20e6) * 1000;
}

/**
 * Bulk throughput: the client sends N bytes and the sink sends N bytes back at the same time,
 * on one flow and then on 8 parallel flows (N/8 each). Each direction is timed by its receiver
 * (first byte to last); the headline is the sum of both directions' rates.
 */
export async function bulkScenario(ctx: Context): Promise<ScenarioReport> {
  const bytesEachWay = (ctx.options.quick ? 64 : 1024) * MiB;
  const table = new SampleTable();
  const detail = new SampleTable();
  const skipped: Skip[] = [];
  const topo = await openTopology(ctx, ctx.options.paths);
  skipped.push(...topo.skipped);
  const client = new WorkerSlot<ClientApi>('client');
  const measureCpu = canMeasureCpu();
  try {
    await runRounds(ctx, topo.routes, skipped, {
      warmup: async (route) => {
        await client.call('bulk', { target: route.target, bytesEachWay: 32 * MiB, flows: 1 }, timeoutFor(32 * MiB));
      },
      measure: async (route) => {
        for (const [flows, metric, perCore] of [[1, BULK_ONE, PER_CORE_ONE], [8, BULK_EIGHT, PER_CORE_EIGHT]] as const) {
          const pids = measureCpu ? route.relayPids?.() : undefined;
          const cpuBefore = pids === undefined ? 0 : cpuSeconds(pids);
          const r = await client.call('bulk', { target: route.target, bytesEachWay, flows }, timeoutFor(bytesEachWay));
          table.add(route.path, metric, 'Gbit/s', r.upGbps + r.downGbps);
          if (pids !== undefined) {
            const cpu = cpuSeconds(pids) - cpuBefore;
            if (cpu > 0) table.add(route.path, perCore, 'Gbit/s', (2 * bytesEachWay * 8) / 1e9 / cpu);
          }
          detail.add(route.path, `${flows} flow${flows > 1 ? 's' : ''}, up`, 'Gbit/s', r.upGbps);
          detail.add(route.path, `${flows} flow${flows > 1 ? 's' : ''}, down`, 'Gbit/s', r.downGbps);
        }
      },
    });
  } finally {
    client.kill();
    topo.close();
  }
  return {
    name: 'bulk',
    title: `bulk throughput: ${bytesEachWay / MiB} MiB each way at once, 1 flow and 8 flows (${ctx.options.rounds} rounds)`,
    rows: table.rows().sort((a, b) => a.metric.localeCompare(b.metric)),
    detail: detail.rows(),
    skipped,
    notes: [
      'Gbit/s = upload rate + download rate, each measured at its receiver from first to last byte',
      'Gbit/s per core = bytes carried both ways / CPU seconds (user + system, from /proc) the path\'s relay processes used during the transfer: connect, proxy and serve for cli; ssh and sshd\'s per-connection processes for ssh; the relay process for relay',
    ],
  };
}
