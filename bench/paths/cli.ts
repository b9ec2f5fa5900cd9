/**
 * The CLI path: client -> `proxy connect --local` -> `proxy start` -> `proxy serve --forward` -> TCP sink,
 * three processes besides the client and the sink, run from bin/proxy.js as a user would, except
 * `--log-level warn` (info logs a line per flow, which the setup-rate scenario would mostly measure).
 * Identities are made with `proxy keygen` in a temporary directory, never in the user's ~/.config.
 * If the CLI is not built, cliProblem() says why and the path is reported as SKIPPED.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { track } from '../harness/children.js';
import { delay } from '../lib/payload.js';
import { connectTcp } from '../lib/target.js';
import type { Route } from './types.js';

// dist/bench/paths/cli.js -> <repo>/bin/proxy.js and <repo>/dist/src/cli/main.js
const BIN = fileURLToPath(new URL('../../../bin/proxy.js', import.meta.url));
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

/** A CLI process whose output is kept (the last few KiB) for endpoint parsing and error messages. */
class CliProcess {
  readonly child: ChildProcess;
  private stdout = '';
  private output = '';
  private readonly waiters = new Set<() => void>();

  constructor(readonly label: string, args: string[]) {
    this.child = track(spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    // Both pipes are always drained: a CLI that logs a lot must never block on a full pipe.
    const onChunk = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString('utf8')).slice(-16_384);
      for (const wake of this.waiters) wake();
    };
    this.child.stdout?.on('data', (chunk: Buffer) => {
      // The endpoint is the first line of stdout; nothing later matters.
      if (this.stdout.length < 4096) this.stdout += chunk.toString('utf8');
      onChunk(chunk);
    });
    this.child.stderr?.on('data', onChunk);
    this.child.once('exit', () => {
      for (const wake of this.waiters) wake();
    });
  }

  /** The endpoint on the first line of stdout. */
  async endpoint(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const newline = this.stdout.indexOf('\n');
      if (newline >= 0) {
        const found = this.stdout.slice(0, newline).match(ENDPOINT_RE)?.[0];
        if (!found) throw new Error(`${this.label} printed ${JSON.stringify(this.stdout.slice(0, newline))}, not an endpoint`);
        return found;
      }
      if (this.child.exitCode !== null) throw new Error(`${this.label} exited (code ${this.child.exitCode}): ${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.label} printed no endpoint within ${timeoutMs / 1000} s: ${this.tail()}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
      });
    }
  }

  tail(): string {
    return this.output.slice(-400).trim().replace(/\s+/g, ' ');
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

/** Polls until `connect --local` accepts; the probe connection reaches the sink and is closed at once. */
async function waitForPort(port: number, timeoutMs: number, owner: CliProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const socket = await connectTcp('127.0.0.1', port);
      socket.end();
      return;
    } catch {
      if (owner.child.exitCode !== null) throw new Error(`${owner.label} exited: ${owner.tail()}`);
      if (Date.now() > deadline) throw new Error(`${owner.label} did not listen on ${port} within ${timeoutMs / 1000} s: ${owner.tail()}`);
      await delay(100);
    }
  }
}

export async function startCliPath(sinkPort: number): Promise<{ route: Route; kill(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'ridproxy-bench-'));
  const procs: CliProcess[] = [];
  const kill = (): void => {
    for (const p of procs) p.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const name of ['proxy.pem', 'server.pem']) {
      const keygen = spawnSync(process.execPath, [BIN, 'keygen', '--out', join(dir, name)], { encoding: 'utf8', timeout: 10_000 });
      if (keygen.status !== 0) throw new Error(`proxy keygen failed: ${keygen.stderr}`);
    }
    const quiet = ['--log-level', 'warn'];
    const proxy = new CliProcess('proxy start', ['start', '--listen', '127.0.0.1:0', '--identity', join(dir, 'proxy.pem'), ...quiet]);
    procs.push(proxy);
    const proxyEndpoint = await proxy.endpoint(15_000);
    const serve = new CliProcess('proxy serve', ['serve', '--proxy', proxyEndpoint, '--forward', `127.0.0.1:${sinkPort}`, '--identity', join(dir, 'server.pem'), ...quiet]);
    procs.push(serve);
    const serverEndpoint = await serve.endpoint(15_000);
    const localPort = await freePort();
    const connect = new CliProcess('proxy connect', ['connect', serverEndpoint, '--local', `127.0.0.1:${localPort}`, ...quiet]);
    procs.push(connect);
    await waitForPort(localPort, 15_000, connect);
    return { route: { path: 'cli', target: { kind: 'tcp', host: '127.0.0.1', port: localPort } }, kill };
  } catch (err) {
    kill();
    throw err;
  }
}
