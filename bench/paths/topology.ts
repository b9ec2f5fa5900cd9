import type { Options, PathName } from '../harness/args.js';
import { Worker } from '../harness/children.js';
import type { Skip } from '../harness/results.js';
import type { SinkApi } from '../workers/sink.js';
import { directRoute, startChainRoute, startDelayedDirectRoute, startRelayRoute } from './baselines.js';
import { startCliPath } from './cli.js';
import { startLibraryPath, type LibraryPath } from './library.js';
import { startSshPath } from './ssh.js';
import type { Route } from './types.js';

export interface Context {
  options: Options;
  /** Paths known not to work in this run (library not built, CLI or sshd missing), with the reason. */
  problems: Partial<Record<PathName, string>>;
  log(line: string): void;
}

export interface Topology {
  routes: Route[];
  skipped: Skip[];
  /** The (encrypted) library path's processes, when it is up. */
  library: LibraryPath | undefined;
  close(): void;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

/**
 * Starts the processes of the requested paths. The TCP paths share one sink process, so they
 * differ only by what sits in between. A path that fails to start is skipped, not fatal.
 * `rttMs` > 0 makes every path a long one, by delay relays adding that much to the round trip
 * end to end: in front of the sink for direct, between ssh and sshd for ssh, half on each hop to
 * the proxy for library, library-plain and cli (relay and chain have no long variant).
 */
export async function openTopology(ctx: Context, paths: readonly PathName[], rttMs = 0): Promise<Topology> {
  const routes: Route[] = [];
  const skipped: Skip[] = [];
  const kills: Array<() => void> = [];
  let library: LibraryPath | undefined;
  const close = (): void => {
    for (const kill of kills.splice(0).reverse()) kill();
  };
  try {
    const wanted = paths.filter((p) => {
      const problem = ctx.problems[p];
      if (problem) skipped.push({ path: p, reason: problem });
      return !problem;
    });
    let sinkPort = 0;
    if (wanted.some((p) => p !== 'library' && p !== 'library-plain')) {
      const sink = await Worker.start<SinkApi>('sink', 'tcp sink');
      kills.push(() => sink.kill());
      sinkPort = (await sink.call('listenTcp', {}, 10_000)).port;
    }
    for (const path of wanted) {
      try {
        if (path === 'direct' && rttMs === 0) routes.push(directRoute(sinkPort));
        else if (path === 'direct' || path === 'relay' || path === 'chain') {
          if (path !== 'direct' && rttMs > 0) throw new Error(`${path} has no long-path variant`);
          const started = await (path === 'direct' ? startDelayedDirectRoute(sinkPort, rttMs) : path === 'relay' ? startRelayRoute(sinkPort) : startChainRoute(sinkPort));
          kills.push(() => started.workers.forEach((w) => w.kill()));
          routes.push(started.route);
        } else if (path === 'library' || path === 'library-plain') {
          // Each has its own proxy and sink, so neither path's processes carry the other's state.
          const started = await startLibraryPath(undefined, path === 'library', rttMs);
          kills.push(started.kill);
          routes.push(started.route);
          if (path === 'library') library = started;
        } else {
          const started = await (path === 'ssh' ? startSshPath(sinkPort, rttMs) : startCliPath(sinkPort, rttMs));
          kills.push(started.kill);
          routes.push(started.route);
        }
      } catch (err) {
        skipped.push({ path, reason: `could not start: ${message(err)}` });
        ctx.log(`  ${path}: could not start: ${message(err)}`);
      }
    }
    return { routes, skipped, library, close };
  } catch (err) {
    close();
    throw err;
  }
}
