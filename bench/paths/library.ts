import { Worker } from '../harness/children.js';
import type { ProxyApi, ProxyLimits } from '../workers/proxy.js';
import type { SinkApi } from '../workers/sink.js';
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
 */
export async function startLibraryPath(limits?: ProxyLimits, encryption = true): Promise<LibraryPath> {
  const proxy = await Worker.start<ProxyApi>('proxy');
  let sink: Worker<SinkApi> | undefined;
  try {
    const { endpoint: proxyEndpoint } = await proxy.call('start', { limits }, 10_000);
    sink = await Worker.start<SinkApi>('sink', encryption ? 'ridproxy sink' : 'ridproxy sink (plain)');
    const { endpoints } = await sink.call('listenRidproxy', { proxyEndpoint, count: 1, concurrency: 1, encryption }, 15_000);
    const s = sink;
    return {
      route: encryption
        ? { path: 'library', target: { kind: 'ridproxy', endpoint: endpoints[0] } }
        : { path: 'library-plain', target: { kind: 'ridproxy', endpoint: endpoints[0], encryption: false } },
      proxy,
      proxyEndpoint,
      sink: s,
      kill: () => {
        s.kill();
        proxy.kill();
      },
    };
  } catch (err) {
    sink?.kill();
    proxy.kill();
    throw err;
  }
}
