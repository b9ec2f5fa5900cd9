/** The ridproxy proxy of the library path, alone in its process so its RSS is its own. */
import type { Proxy, ProxyOptions, ProxyStats } from '../../src/index.js';
import { serveRpc } from '../harness/rpc.js';
import { settledMemory, type MemorySample } from '../lib/memory.js';
import { loadRidproxy } from '../lib/ridproxy.js';

/**
 * Limits the memory and active scenarios raise: their servers all come from 127.0.0.1 and outnumber
 * the defaults, and they hold thousands of VCs (active: the budgets under the global one raised to
 * it, so the global budget is the one that binds).
 */
export type ProxyLimits = Pick<
  ProxyOptions,
  | 'maxConnections'
  | 'maxConnectionsPerAddress'
  | 'maxRegistrations'
  | 'maxVcsPerConnection'
  | 'bufferBudget'
  | 'connectionBufferBudget'
  | 'identityBufferBudget'
  | 'addressBufferBudget'
>;

export interface ProxyApi {
  /** Everything else stays at the library's defaults, as a user would run it. */
  start(p: { limits?: ProxyLimits }): Promise<{ endpoint: string; port: number }>;
  memory(p: Record<string, never>): Promise<MemorySample & { stats: ProxyStats }>;
  /** Joins the started proxy to a cluster on NATS (the cluster scenario); resolves once the directory is reached. */
  join(p: { servers: string; members: string[] }): Promise<{ routingId: string }>;
}

let proxy: Proxy | undefined;

serveRpc<ProxyApi>({
  start: async ({ limits }) => {
    const { Proxy } = await loadRidproxy();
    proxy = await Proxy.listen({ ...limits, host: '127.0.0.1', port: 0 });
    return { endpoint: proxy.endpoint, port: proxy.port };
  },
  join: async ({ servers, members }) => {
    if (!proxy) throw new Error('the proxy is not started');
    // dist/bench/workers/proxy.js -> dist/src/cluster/index.js, loaded only here.
    const { Cluster } = await import('../../src/cluster/index.js');
    const cluster = Cluster.join(proxy, { servers, members });
    await cluster.ready;
    return { routingId: proxy.routingId.toString() };
  },
  memory: async () => {
    if (!proxy) throw new Error('the proxy is not started');
    return { ...(await settledMemory()), stats: proxy.stats() };
  },
});
