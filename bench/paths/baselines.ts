import { Worker } from '../harness/children.js';
import type { RelayApi } from '../workers/relay.js';
import type { Route } from './types.js';

/** Starts a relay process, has it listen (`listen` calls its API), and returns it with its listening port. */
async function startRelayWorker(label: string, listen: (worker: Worker<RelayApi>) => Promise<{ port: number }>): Promise<{ worker: Worker<RelayApi>; port: number }> {
  const worker = await Worker.start<RelayApi>('relay', label);
  try {
    return { worker, port: (await listen(worker)).port };
  } catch (err) {
    worker.kill();
    throw err;
  }
}

/** Starts a plain relay process forwarding to port and returns it with its listening port. */
export function startRelay(label: string, port: number): Promise<{ worker: Worker<RelayApi>; port: number }> {
  return startRelayWorker(label, (w) => w.call('start', { host: '127.0.0.1', port }, 10_000));
}

/**
 * Starts a delay relay forwarding to 127.0.0.1:port that holds every byte `oneWayMs` each way, so
 * it adds twice that to the round trip. It runs in its own process, so holding and releasing bytes
 * takes no event-loop time from the path's processes (it still takes CPU, which a real network would not).
 */
export function startDelay(label: string, port: number, oneWayMs: number): Promise<{ worker: Worker<RelayApi>; port: number }> {
  return startRelayWorker(label, (w) => w.call('startDelay', { port, oneWayMs }, 10_000));
}

export function directRoute(sinkPort: number): Route {
  return { path: 'direct', target: { kind: 'tcp', host: '127.0.0.1', port: sinkPort } };
}

/** Direct TCP over a long path: client -> delay relay adding the whole RTT -> sink. */
export async function startDelayedDirectRoute(sinkPort: number, rttMs: number): Promise<{ route: Route; workers: Worker<RelayApi>[] }> {
  const relay = await startDelay('direct delay', sinkPort, rttMs / 2);
  return { route: directRoute(relay.port), workers: [relay.worker] };
}

export async function startRelayRoute(sinkPort: number): Promise<{ route: Route; workers: Worker<RelayApi>[] }> {
  const relay = await startRelay('relay', sinkPort);
  const relayPids = (): number[] => (relay.worker.child.pid === undefined ? [] : [relay.worker.child.pid]);
  return { route: { path: 'relay', target: { kind: 'tcp', host: '127.0.0.1', port: relay.port }, relayPids }, workers: [relay.worker] };
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
