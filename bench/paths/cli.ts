/**
 * The CLI path: client -> `proxy connect --local` -> `proxy start` -> `proxy serve --forward` -> TCP sink,
 * three processes besides the client and the sink, run from bin/proxy.js as a user would, except
 * `--log-level warn` (info logs a line per flow, which the setup-rate scenario would mostly measure).
 * Identities are made with `proxy keygen` in a temporary directory, never in the user's ~/.config.
 * If the CLI is not built, cliProblem() says why and the path is reported as SKIPPED.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { endpointPort, startDelayedHops, viaPort, type DelayedHops } from './hops.js';
import { freePort, OutputProcess, waitForPort } from './process.js';
import type { Route } from './types.js';

// dist/bench/paths/cli.js -> <repo>/bin/proxy.js and <repo>/dist/src/cli/main.js
export const BIN = fileURLToPath(new URL('../../../bin/proxy.js', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const ENDPOINT_RE = /ridp:\/\/\S+\/[0-9a-f]{32}/;

/** Why the CLI path cannot run now, or undefined when it can. */
export function cliProblem(): string | undefined {
  if (!existsSync(MAIN)) return 'TODO: the CLI is not built yet (dist/src/cli/main.js missing)';
  const help = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8', timeout: 10_000 });
  const text = `${help.stdout ?? ''}${help.stderr ?? ''}`;
  const missing = ['start', 'serve', 'connect'].filter((c) => !new RegExp(`\\b${c}\\b`).test(text));
  if (missing.length > 0) return `TODO: bin/proxy.js has no ${missing.join(', ')} command yet`;
  return undefined;
}

/**
 * BENCH_CPU_PROF=<dir> (as for the bench's workers, harness/children.ts): each CLI process writes
 * a V8 CPU profile into <dir>/cli-<command>/ when it exits, and is stopped with SIGTERM (it shuts
 * down and exits 0) instead of SIGKILL, so that it does. `node dist/bench/profile-summary.js <dir>`
 * prints each profile's top entries.
 */
const PROFILE_DIR = process.env.BENCH_CPU_PROF;

/**
 * The node flags of bin/proxy.js's `#!/usr/bin/env -S node <flags>` line: what `npx proxy` runs
 * with. The bench runs the launcher through this Node (so that it can add profiling flags,
 * which NODE_OPTIONS does not take), with the same flags.
 */
function launcherFlags(): string[] {
  const shebang = readFileSync(BIN, 'utf8').split('\n', 1)[0]!;
  const flags = /^#!\/usr\/bin\/env -S node(?: (.*))?$/.exec(shebang);
  if (!flags) throw new Error(`${BIN} starts with ${JSON.stringify(shebang)}, not #!/usr/bin/env -S node ...`);
  return flags[1]?.split(' ') ?? [];
}

/** A CLI process: bin/proxy.js run by this Node, as its #! line runs it. */
export function cliProcess(label: string, args: string[]): OutputProcess {
  if (PROFILE_DIR === undefined) return new OutputProcess(label, process.execPath, [...launcherFlags(), BIN, ...args]);
  const profile = ['--cpu-prof', `--cpu-prof-dir=${join(PROFILE_DIR, `cli-${args[0]}`)}`];
  return new OutputProcess(label, process.execPath, [...launcherFlags(), ...profile, BIN, ...args], true);
}

/** The endpoint a CLI process prints as the first line of its stdout. */
export function endpointOf(cli: OutputProcess, timeoutMs: number): Promise<string> {
  return cli.waitFor(
    'endpoint',
    () => {
      const newline = cli.stdout.indexOf('\n');
      if (newline < 0) return undefined;
      const found = cli.stdout.slice(0, newline).match(ENDPOINT_RE)?.[0];
      if (!found) throw new Error(`${cli.label} printed ${JSON.stringify(cli.stdout.slice(0, newline))}, not an endpoint`);
      return found;
    },
    timeoutMs,
  );
}

/**
 * `rttMs` > 0 puts a delay relay on each hop to the proxy (hops.ts): `serve` registers through
 * one, `connect` reaches the proxy through the other.
 */
export async function startCliPath(sinkPort: number, rttMs = 0): Promise<{ route: Route; kill(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'ridproxy-bench-'));
  const procs: OutputProcess[] = [];
  let hops: DelayedHops | undefined;
  const kill = (): void => {
    for (const p of procs) p.kill();
    hops?.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const name of ['proxy.pem', 'server.pem']) {
      const keygen = spawnSync(process.execPath, [BIN, 'keygen', '--out', join(dir, name)], { encoding: 'utf8', timeout: 10_000 });
      if (keygen.status !== 0) throw new Error(`proxy keygen failed: ${keygen.stderr}`);
    }
    const quiet = ['--log-level', 'warn'];
    const proxy = cliProcess('proxy start', ['start', '--listen', '127.0.0.1:0', '--identity', join(dir, 'proxy.pem'), ...quiet]);
    procs.push(proxy);
    const proxyEndpoint = await endpointOf(proxy, 15_000);
    if (rttMs > 0) hops = await startDelayedHops(endpointPort(proxyEndpoint), rttMs);
    const registerAt = hops ? viaPort(proxyEndpoint, hops.acceptPort) : proxyEndpoint;
    const serve = cliProcess('proxy serve', ['serve', '--proxy', registerAt, '--forward', `127.0.0.1:${sinkPort}`, '--identity', join(dir, 'server.pem'), ...quiet]);
    procs.push(serve);
    const printed = await endpointOf(serve, 15_000);
    const serverEndpoint = hops ? viaPort(printed, hops.dialPort) : printed;
    const localPort = await freePort();
    const connect = cliProcess('proxy connect', ['connect', serverEndpoint, '--local', `127.0.0.1:${localPort}`, ...quiet]);
    procs.push(connect);
    await waitForPort(localPort, 15_000, connect);
    const relayPids = (): number[] => [proxy, serve, connect].flatMap((p) => (p.child.pid === undefined ? [] : [p.child.pid]));
    return { route: { path: 'cli', target: { kind: 'tcp', host: '127.0.0.1', port: localPort }, relayPids }, kill };
  } catch (err) {
    kill();
    throw err;
  }
}
