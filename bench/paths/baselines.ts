import { Worker } from '../harness/children.js';
import type { RelayApi } from '../workers/relay.js';
import type { Route } from './types.js';

/** Starts a plain relay process forwarding to port and returns it with its listening port. */
export async function startRelay(label: string, port: number): Promise<{ worker: Worker<RelayApi>; port: number }> {
  const worker = await Worker.start<RelayApi>('relay', label);
  try {
    const started = await worker.call('start', { host: '127.0.0.1', port }, 10_000);
    return { worker, port: started.port };
  } catch (err) {
    worker.kill();
    throw err;
  }
}

export function directRoute(sinkPort: number): Route {
  return { path: 'direct', target: { kind: 'tcp', host: '127.0.0.1', port: sinkPort } };
}

export async function startRelayRoute(sinkPort: number): Promise<{ route: Route; workers: Worker<RelayApi>[] }> {
  const relay = await startRelay('relay', sinkPort);
  return { route: { path: 'relay', target: { kind: 'tcp', host: '127.0.0.1', port: relay.port } }, workers: [relay.worker] };
}

/** client -> relay A -> relay B -> sink: the second relay forwards to the sink, the first to the second. */
export async function startChainRoute(sinkPort: number): Promise<{ route: Route; workers: Worker<RelayApi>[] }> {
  const second = await startRelay('chain relay 2', sinkPort);
  try {
    const first = await startRelay('chain relay 1', second.port);
    return { route: { path: 'chain', target: { kind: 'tcp', host: '127.0.0.1', port: first.port } }, workers: [first.worker, second.worker] };
  } catch (err) {
    second.worker.kill();
    throw err;
  }
}
