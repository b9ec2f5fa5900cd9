import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { Worker, WorkerSlot, track } from '../harness/children.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import type { Context } from '../paths/topology.js';
import type { Route } from '../paths/types.js';
import type { ClientApi, SetupResult } from '../workers/client.js';
import type { ProxyApi } from '../workers/proxy.js';
import type { SinkApi } from '../workers/sink.js';
import { runRounds } from './rounds.js';

const MiB = 2 ** 20;
export const CLUSTER_SINGLE = 'one proxy (client -> B -> sink)';
export const CLUSTER_RELAYED = 'cluster (client -> A -> B -> sink)';
export const CLUSTER_SETUP = 'new VCs/s';
export const CLUSTER_BULK_ONE = '1 flow, up+down';
export const CLUSTER_BULK_EIGHT = '8 flows, up+down';
const CLIENTS = 2;
const CONCURRENCY = 50;

const NATS_SERVER = process.env.NATS_SERVER ?? (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');

function natsProblem(): string | undefined {
  const probe = spawnSync(NATS_SERVER, ['--version'], { encoding: 'utf8' });
  return probe.error || probe.status !== 0 ? `nats-server not found (apt-get install nats-server)` : undefined;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startNats(): Promise<{ url: string; kill(): void }> {
  const port = await freePort();
  const child = track(spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' }));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`nats-server did not start on port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { url: `nats://127.0.0.1:${port}`, kill: () => child.kill('SIGKILL') };
}

function rate(results: SetupResult[]): number {
  const completed = results.reduce((n, r) => n + r.completed, 0);
  const span = Math.max(...results.map((r) => r.endMs)) - Math.min(...results.map((r) => r.startMs));
  return span > 0 ? (completed * 1000) / span : Number.NaN;
}

/**
 * A cluster of two proxies (each in its process) on one nats-server: the sink registers on proxy
 * B, and the client reaches it through B (one proxy, the library path) and through A, which looks
 * it up in the directory and forwards the VC to B over a link (two proxies). Measured: new VCs per
 * second (each a lookup, a forwarded OpenVc and a TLS 1.3 handshake end to end, from Managers
 * whose hop connections are up) and bulk throughput, both routes in the same run.
 */
export async function clusterScenario(ctx: Context): Promise<ScenarioReport> {
  const count = ctx.options.quick ? 200 : 2_000;
  const bytesEachWay = (ctx.options.quick ? 64 : 512) * MiB;
  const table = new SampleTable();
  const skipped: Skip[] = [];
  const notes: string[] = [];
  const title = `cluster: ${count.toLocaleString('en-US')} new VCs (${CONCURRENCY} at a time) and ${bytesEachWay / MiB} MiB each way, through one proxy and through two proxies of a cluster (${ctx.options.rounds} rounds)`;
  const problem = ctx.problems.library ?? natsProblem();
  if (problem !== undefined || !ctx.options.paths.includes('library')) {
    skipped.push({ path: 'library', reason: problem ?? 'the library path is not selected' });
    return { name: 'cluster', title, rows: [], detail: [], skipped, notes };
  }
  const kills: Array<() => void> = [];
  const clients = Array.from({ length: CLIENTS }, (_, i) => new WorkerSlot<ClientApi>('client', `client ${i + 1}`));
  try {
    const nats = await startNats();
    kills.push(nats.kill);
    const proxies = await Promise.all(['proxy A', 'proxy B'].map((label) => Worker.start<ProxyApi>('proxy', label)));
    for (const proxy of proxies) kills.push(() => proxy.kill());
    const started = await Promise.all(proxies.map((proxy) => proxy.call('start', {}, 10_000)));
    const members = started.map((s) => s.endpoint.slice(-32));
    await Promise.all(proxies.map((proxy) => proxy.call('join', { servers: nats.url, members }, 15_000)));
    const sink = await Worker.start<SinkApi>('sink', 'ridproxy sink');
    kills.push(() => sink.kill());
    const { endpoints } = await sink.call('listenRidproxy', { proxyEndpoint: started[1].endpoint, count: 1, concurrency: 1 }, 15_000);
    const sinkRid = endpoints[0].slice(-32);
    const single: Route = { path: 'library', target: { kind: 'ridproxy', endpoint: endpoints[0] } };
    const relayed: Route = { path: 'library', target: { kind: 'ridproxy', endpoint: `ridp://${members[0]}@127.0.0.1:${started[0].port}/${sinkRid}` } };
    const labels = new Map<Route, string>([
      [single, CLUSTER_SINGLE],
      [relayed, CLUSTER_RELAYED],
    ]);
    const routes = [single, relayed];
    const across = async (route: Route, total: number): Promise<number> => {
      const share = Math.ceil(total / CLIENTS);
      const results = await Promise.all(clients.map((c) => c.call('setupRate', { target: route.target, mode: 'vc', count: share, concurrency: CONCURRENCY / CLIENTS }, 30_000 + total * 20)));
      const failures = results.reduce((n, r) => n + r.failures, 0);
      if (failures > 0) notes.push(`${labels.get(route)}: ${failures} VC setups failed (first: ${results.find((r) => r.firstError)?.firstError})`);
      return rate(results);
    };
    const bulkTimeout = 30_000 + ((2 * bytesEachWay) / 20e6) * 1000;
    await runRounds(ctx, routes, skipped, {
      warmup: async (route) => {
        await across(route, 200);
        await clients[0].call('bulk', { target: route.target, bytesEachWay: 32 * MiB, flows: 1 }, bulkTimeout);
      },
      measure: async (route) => {
        const label = labels.get(route)!;
        table.add(label, CLUSTER_SETUP, '/s', await across(route, count));
        for (const [flows, metric] of [[1, CLUSTER_BULK_ONE], [8, CLUSTER_BULK_EIGHT]] as const) {
          const r = await clients[0].call('bulk', { target: route.target, bytesEachWay, flows }, bulkTimeout);
          table.add(label, metric, 'Gbit/s', r.upGbps + r.downGbps);
        }
      },
    });
  } finally {
    clients.forEach((c) => c.kill());
    for (const kill of kills.reverse()) kill();
  }
  return {
    name: 'cluster',
    title,
    rows: table.rows(),
    detail: [],
    skipped,
    notes: [
      `each proxy, the sink and ${CLIENTS} client processes are processes of their own, and nats-server another, all on this machine: the relayed route has one process more on its path, sharing the same cores`,
      `new VCs: each from one of ${CONCURRENCY} Managers whose hop connection to its proxy was up before the clock started, ending with a 1-byte echo and the VC's close; through the cluster each is also a directory lookup (one NATS request) and an OpenVc over the proxies' link`,
      'Gbit/s = upload rate + download rate, each measured at its receiver from first to last byte',
      ...notes,
    ],
  };
}
