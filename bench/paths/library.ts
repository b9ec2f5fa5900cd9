import { Worker } from '../harness/children.js';
import type { ProxyApi, ProxyLimits } from '../workers/proxy.js';
import type { SinkApi } from '../workers/sink.js';
import { startDelayedHops, viaPort, type DelayedHops } from './hops.js';
import type { Route } from './types.js';

export interface LibraryPath {
  route: Route;
  proxy: Worker<ProxyApi>;
  proxyEndpoint: string;
  sink: Worker<SinkApi>;
  kill(): void;
}

/**
 * Proxy in one process, the accepting Manager in another; the client worker dials (a third).
 * `encryption: false` gives the library-plain path (the client's Managers read it from the target).
 * `rttMs` > 0 puts a delay relay on each hop (hops.ts): the sink registers through one, and the
 * endpoint the client dials reaches the proxy through the other.
 */
export async function startLibraryPath(limits?: ProxyLimits, encryption = true, rttMs = 0): Promise<LibraryPath> {
  const proxy = await Worker.start<ProxyApi>('proxy');
  let sink: Worker<SinkApi> | undefined;
  let hops: DelayedHops | undefined;
  const kill = (): void => {
    sink?.kill();
    hops?.kill();
    proxy.kill();
  };
  try {
    const { endpoint: proxyEndpoint, port } = await proxy.call('start', { limits }, 10_000);
    if (rttMs > 0) hops = await startDelayedHops(port, rttMs);
    sink = await Worker.start<SinkApi>('sink', encryption ? 'ridproxy sink' : 'ridproxy sink (plain)');
    const registerAt = hops ? viaPort(proxyEndpoint, hops.acceptPort) : proxyEndpoint;
    const { endpoints } = await sink.call('listenRidproxy', { proxyEndpoint: registerAt, count: 1, concurrency: 1, encryption }, 15_000);
    const endpoint = hops ? viaPort(endpoints[0], hops.dialPort) : endpoints[0];
    return {
      route: encryption
        ? { path: 'library', target: { kind: 'ridproxy', endpoint } }
        : { path: 'library-plain', target: { kind: 'ridproxy', endpoint, encryption: false } },
      proxy,
      proxyEndpoint,
      sink,
      kill,
    };
  } catch (err) {
    kill();
    throw err;
  }
}
