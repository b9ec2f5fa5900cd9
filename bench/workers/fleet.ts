/**
 * A fleet of servers kept registered on one proxy by PersistentRegistration, as `proxy serve`
 * keeps itself (same defaults: capped, jittered backoff), for the reconnect scenario. Each server
 * is its own Manager (its own identity and hop connection). The worker records, per server, when
 * it registered again after `mark()` and why its attempts failed, in wall-clock milliseconds
 * (Date.now()), so the parent can compare them with the moment it saw the proxy come back.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
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
  /** The last few messages of each failure code, for reading (not only the ones after `since`). */
  examples: Record<string, string[]>;
}

export interface FleetProgress {
  /** Servers registered again since mark(). */
  back: number;
  stopped: number;
  /** This process's CPU time (user + system) since mark(), in seconds. */
  cpuSeconds: number;
  /** The longest event-loop delay of this process since the last progress() or mark(), in ms: how late its timers and events ran. */
  lagMaxMs: number;
}

export interface FleetApi {
  /** Registers `count` servers (concurrency at a time); the first registration of each must succeed, as for `serve`. */
  start(p: { proxyEndpoint: string; count: number; concurrency: number }): Promise<{ registered: number; failures: number; firstError: string | undefined }>;
  /** Forgets what happened so far: from now on reRegisteredAt records each server's next registration. */
  mark(p: Record<string, never>): Promise<{ registeredNow: number }>;
  snapshot(p: { since: number }): Promise<FleetSnapshot>;
  /** Cheap enough to poll during the storm (snapshot() walks every failure). */
  progress(p: Record<string, never>): Promise<FleetProgress>;
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
let back = 0;
const EXAMPLES = 3;
const examples = new Map<string, string[]>();
let cpuAtMark = process.cpuUsage();
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

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
        if (server.reRegisteredAt === null) {
          server.reRegisteredAt = now;
          back++;
        }
      });
      registration.on('lost', () => losses.push(Date.now()));
      registration.on('retrying', ({ error }) => {
        const code = codeOf(error);
        failures.push([Date.now(), code]);
        const list = examples.get(code) ?? [];
        list.push(error.message);
        examples.set(code, list.slice(-EXAMPLES));
      });
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
    back = 0;
    examples.clear();
    cpuAtMark = process.cpuUsage();
    loopDelay.reset();
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
      examples: Object.fromEntries(examples),
    };
  },
  progress: async () => {
    const lagMaxMs = loopDelay.max / 1e6;
    loopDelay.reset();
    const cpu = process.cpuUsage(cpuAtMark);
    return { back, stopped: servers.filter((s) => s.stopped).length, cpuSeconds: (cpu.user + cpu.system) / 1e6, lagMaxMs };
  },
});
