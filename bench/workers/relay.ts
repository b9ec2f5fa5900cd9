/**
 * The plain Node relay the issue names as a baseline: accept, connect onward, `pipe` both ways.
 * Deliberately nothing more (no pooling, no tuning), as a user would write it. Two of these in
 * series make the two-process chain. The same process can instead be a delay relay
 * (lib/delay-relay.ts), which makes a hop of the long-path scenario a long one.
 */
import { connect, createServer, type Socket } from 'node:net';
import { serveRpc } from '../harness/rpc.js';
import { settledMemory, type MemorySample } from '../lib/memory.js';
import { listenOnLoopback } from '../lib/listen.js';
import { startDelayRelay } from '../lib/delay-relay.js';

export interface RelayApi {
  start(p: { host: string; port: number }): Promise<{ port: number }>;
  /** A delay relay to 127.0.0.1:port instead: every byte is held `oneWayMs` in each direction. */
  startDelay(p: { port: number; oneWayMs: number }): Promise<{ port: number }>;
  memory(p: Record<string, never>): Promise<MemorySample & { connections: number }>;
}

let connections = 0;

function relay(inbound: Socket, host: string, port: number): void {
  const outbound = connect({ host, port, noDelay: true, allowHalfOpen: true });
  connections++;
  const teardown = (): void => {
    inbound.destroy();
    outbound.destroy();
  };
  inbound.on('error', teardown);
  outbound.on('error', teardown);
  let closed = 0;
  const onClose = (): void => {
    // Once one side is fully closed the other has nothing left to do.
    if (++closed === 1) teardown();
    else connections--;
  };
  inbound.on('close', onClose);
  outbound.on('close', onClose);
  inbound.pipe(outbound);
  outbound.pipe(inbound);
}

async function start({ host, port }: { host: string; port: number }): Promise<{ port: number }> {
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => relay(socket, host, port));
  return { port: await listenOnLoopback(server) };
}

serveRpc<RelayApi>({
  start,
  startDelay: async ({ port, oneWayMs }) => ({ port: (await startDelayRelay(port, oneWayMs)).port }),
  memory: async () => ({ ...(await settledMemory()), connections }),
});
