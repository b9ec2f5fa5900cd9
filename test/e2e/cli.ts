import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bin/proxy.js: what `npx proxy` runs. */
export const LAUNCHER = fileURLToPath(new URL('../../bin/proxy.js', import.meta.url));

export interface CliProcess {
  child: ChildProcess;
  /** The first line the command printed on stdout (its endpoint or address). */
  firstLine: Promise<string>;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** A config directory of its own per test, so no test touches the user's identity. */
export function isolatedConfig(): string {
  return mkdtempSync(join(tmpdir(), 'ridproxy-e2e-'));
}

const running = new Set<ChildProcess>();

/** The test runner's environment without RIDPROXY_* tokens, so a developer's exported token cannot change what a test sees. */
function inheritedEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('RIDPROXY_')));
}

/** Runs `proxy <args>` as a user would: a real process running the built launcher, executed as npx does (its #! line picks node and its flags). */
export function runCli(args: string[], options: { config: string; env?: Record<string, string> }): CliProcess {
  const child = spawn(LAUNCHER, args, {
    env: { ...inheritedEnv(), ...options.env, XDG_CONFIG_HOME: options.config, NO_COLOR: '1' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => {
    stderr += text;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // 'close', not 'exit': by then all it wrote to stdout and stderr has been read.
    child.once('close', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  const firstLine = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      const newline = stdout.indexOf('\n');
      if (newline >= 0) resolve(stdout.slice(0, newline));
    });
    void exited.then(({ code }) => reject(new Error(`proxy ${args.join(' ')} exited with ${code} before printing a line; stderr: ${stderr}`)));
  });
  firstLine.catch(() => undefined);
  return { child, firstLine, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Runs a command to completion and returns its exit code and output. */
export async function runToExit(args: string[], config: string, env?: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = runCli(args, { config, env });
  const { code } = await cli.exited;
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

export async function killAll(): Promise<void> {
  await Promise.all(
    [...running].map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once('close', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

/** A port nothing listens on right now, for a process that must come back on the same one. */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
