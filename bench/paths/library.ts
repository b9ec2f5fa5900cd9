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

/** Proxy in one process, the accepting Manager in another; the client worker dials (a third). */
export async function startLibraryPath(limits?: ProxyLimits): Promise<LibraryPath> {
  const proxy = await Worker.start<ProxyApi>('proxy');
  let sink: Worker<SinkApi> | undefined;
  try {
    const { endpoint: proxyEndpoint } = await proxy.call('start', { limits }, 10_000);
    sink = await Worker.start<SinkApi>('sink', 'ridproxy sink');
    const { endpoints } = await sink.call('listenRidproxy', { proxyEndpoint, count: 1, concurrency: 1 }, 15_000);
    const s = sink;
    return {
      route: { path: 'library', target: { kind: 'ridproxy', endpoint: endpoints[0] } },
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
