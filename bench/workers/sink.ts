/**
 * The receiving end of every path: a TCP server (direct, relays, CLI `serve --forward` target) or
 * one or more ridproxy Managers registered on a proxy (library path; many of them for the memory
 * scenario). Every stream is served by lib/peer.ts.
 */
import { createServer, type Server } from 'node:net';
import type { Manager } from '../../src/index.js';
import { serveRpc } from '../harness/rpc.js';
import { settledMemory, type MemorySample } from '../lib/memory.js';
import { servePeer } from '../lib/peer.js';
import { runPool } from '../lib/pool.js';
import { loadRidproxy } from '../lib/ridproxy.js';
import { listenOnLoopback } from '../lib/listen.js';

export interface SinkApi {
  listenTcp(p: Record<string, never>): Promise<{ port: number }>;
  /** Registers `count` Managers (distinct identities) on the proxy; returns the endpoints to dial, in order. */
  listenRidproxy(p: { proxyEndpoint: string; count: number; concurrency: number; encryption?: boolean }): Promise<{ endpoints: string[] }>;
  memory(p: Record<string, never>): Promise<MemorySample & { managers: number }>;
}

const servers: Server[] = [];
const managers: Manager[] = [];

async function listenTcp(): Promise<{ port: number }> {
  const server = createServer({ noDelay: true, allowHalfOpen: true }, servePeer);
  servers.push(server);
  return { port: await listenOnLoopback(server) };
}

async function listenRidproxy({
  proxyEndpoint,
  count,
  concurrency,
  encryption = true,
}: {
  proxyEndpoint: string;
  count: number;
  concurrency: number;
  encryption?: boolean;
}): Promise<{ endpoints: string[] }> {
  const { Manager } = await loadRidproxy();
  const endpoints: string[] = new Array<string>(count);
  const result = await runPool(count, concurrency, async (i) => {
    const manager = new Manager({ encryption });
    managers.push(manager);
    const registration = await manager.proxyListen('bench', proxyEndpoint);
    endpoints[i] = registration.endpoint;
    void (async () => {
      for await (const flow of manager) servePeer(flow);
    })().catch(() => undefined);
  });
  if (result.failures > 0) throw new Error(`${result.failures} of ${count} registrations failed; first: ${result.firstError}`);
  return { endpoints };
}

serveRpc<SinkApi>({
  listenTcp,
  listenRidproxy,
  memory: async () => ({ ...(await settledMemory()), managers: managers.length }),
});
