/**
 * A fleet of servers kept registered on one proxy by PersistentRegistration, as `proxy serve`
 * keeps itself (same defaults: capped, jittered backoff), for the reconnect scenario. Each server
 * is its own Manager (its own identity and hop connection). The worker records, per server, when
 * it registered again after `mark()` and why its attempts failed, in wall-clock milliseconds
 * (Date.now()), so the parent can compare them with the moment it saw the proxy come back.
 */
import type { Manager, PersistentRegistration } from '../../src/index.js';
import { serveRpc } from '../harness/rpc.js';
import { runPool } from '../lib/pool.js';
import { loadRidproxy } from '../lib/ridproxy.js';

export interface FleetSnapshot {
  servers: number;
  registeredNow: number;
  /** Wall-clock ms of each server's first registration after mark(), in server order; null while it has none. */
  reRegisteredAt: Array<number | null>;
  /** Attempts that failed after `since`, by error code (ECONNREFUSED, ERR_LIMIT, ERR_TIMEOUT, ...). */
  failuresSince: Record<string, number>;
  /** Registrations lost after `since` (a server that got back and lost it again). */
  lostSince: number;
  /** Registration attempts made after `since` (failed ones plus successful ones). */
  attemptsSince: number;
  /** Servers that stopped for good (conflict): none should. */
  stopped: number;
}

export interface FleetApi {
  /** Registers `count` servers (concurrency at a time); the first registration of each must succeed, as for `serve`. */
  start(p: { proxyEndpoint: string; count: number; concurrency: number }): Promise<{ registered: number; failures: number; firstError: string | undefined }>;
  /** Forgets what happened so far: from now on reRegisteredAt records each server's next registration. */
  mark(p: Record<string, never>): Promise<{ registeredNow: number }>;
  snapshot(p: { since: number }): Promise<FleetSnapshot>;
}

interface Server {
  manager: Manager;
  registration: PersistentRegistration;
  reRegisteredAt: number | null;
  stopped: boolean;
}

const servers: Server[] = [];
/** [wall ms, code] of every failed attempt since mark(). */
let failures: Array<[number, string]> = [];
/** Wall ms of every registration lost since mark(). */
let losses: number[] = [];
/** Wall ms of every successful re-registration since mark() (also in reRegisteredAt, first only). */
let successes: number[] = [];

function codeOf(err: Error): string {
  return (err as { code?: string }).code ?? err.name;
}

serveRpc<FleetApi>({
  start: async ({ proxyEndpoint, count, concurrency }) => {
    const { Manager, PersistentRegistration } = await loadRidproxy();
    const result = await runPool(count, concurrency, async () => {
      const manager = new Manager();
      const registration = await PersistentRegistration.start(manager, 'bench', proxyEndpoint);
      const server: Server = { manager, registration, reRegisteredAt: null, stopped: false };
      servers.push(server);
      registration.on('registered', () => {
        const now = Date.now();
        successes.push(now);
        server.reRegisteredAt ??= now;
      });
      registration.on('lost', () => losses.push(Date.now()));
      registration.on('retrying', ({ error }) => failures.push([Date.now(), codeOf(error)]));
      void registration.done.then(() => {
        server.stopped = true;
      });
    });
    return { registered: servers.length, failures: result.failures, firstError: result.firstError };
  },
  mark: async () => {
    for (const server of servers) server.reRegisteredAt = null;
    failures = [];
    losses = [];
    successes = [];
    return { registeredNow: servers.filter((s) => s.registration.isRegistered).length };
  },
  snapshot: async ({ since }) => {
    const failuresSince: Record<string, number> = {};
    let failed = 0;
    for (const [t, code] of failures) {
      if (t < since) continue;
      failed++;
      failuresSince[code] = (failuresSince[code] ?? 0) + 1;
    }
    return {
      servers: servers.length,
      registeredNow: servers.filter((s) => s.registration.isRegistered).length,
      reRegisteredAt: servers.map((s) => s.reRegisteredAt),
      failuresSince,
      lostSince: losses.filter((t) => t >= since).length,
      attemptsSince: failed + successes.filter((t) => t >= since).length,
      stopped: servers.filter((s) => s.stopped).length,
    };
  },
});
