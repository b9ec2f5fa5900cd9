/**
 * Programs a path runs as a user would (the ridproxy CLI, sshd, ssh), with their output kept for
 * readiness lines and error messages. Every one is tracked, so the bench kills it whatever fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { delay } from '../lib/payload.js';
import { connectTcp } from '../lib/target.js';
import { track } from '../harness/children.js';

/** A spawned program whose stdout (the first 4 KiB) and combined output (the last 16 KiB) are kept. */
export class OutputProcess {
  readonly child: ChildProcess;
  /** The start of stdout, where programs print what they are ready to be used by (an endpoint). */
  stdout = '';
  /** The end of stdout and stderr together, for readiness lines on stderr and for error messages. */
  output = '';
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly label: string,
    command: string,
    args: string[],
    /** Stops it with SIGTERM rather than SIGKILL, so that it exits on its own (and writes a CPU profile). */
    private readonly graceful = false,
  ) {
    this.child = track(spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    // Both pipes are always drained: a program that logs a lot must never block on a full pipe.
    const onChunk = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString('utf8')).slice(-16_384);
      this.wakeAll();
    };
    this.child.stdout?.on('data', (chunk: Buffer) => {
      if (this.stdout.length < 4096) this.stdout += chunk.toString('utf8');
      onChunk(chunk);
    });
    this.child.stderr?.on('data', onChunk);
    // A program that cannot be started (ENOENT) emits 'error' and no 'exit'.
    this.child.once('error', (err) => {
      this.output += `\n${err.message}`;
      this.wakeAll();
    });
    this.child.once('exit', () => this.wakeAll());
  }

  private wakeAll(): void {
    for (const wake of this.waiters) wake();
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null || this.child.pid === undefined;
  }

  /**
   * Resolves to what `find` returns once it returns something, checking after every chunk of
   * output; rejects when the program exits first or `timeoutMs` passes, with the output's tail.
   */
  async waitFor<T>(what: string, find: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      if (this.exited) throw new Error(`${this.label} exited (${this.child.signalCode ?? `code ${this.child.exitCode}`}) before ${what}: ${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.label}: no ${what} within ${timeoutMs / 1000} s: ${this.tail()}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 100));
        this.waiters.add(done);
      });
    }
  }

  tail(): string {
    return this.output.slice(-400).trim().replace(/\s+/g, ' ');
  }

  kill(): void {
    if (this.exited) return;
    if (!this.graceful) {
      this.child.kill('SIGKILL');
      return;
    }
    this.child.kill('SIGTERM');
    setTimeout(() => {
      if (!this.exited) this.child.kill('SIGKILL');
    }, 10_000).unref();
  }
}

/** A loopback port that was free a moment ago (for programs that cannot listen on port 0 and say which port they got). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

/** Polls until `port` accepts; the probe connection is closed at once (a sink ends a stream that picks no op). */
export async function waitForPort(port: number, timeoutMs: number, owner: OutputProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const socket = await connectTcp('127.0.0.1', port);
      socket.end();
      return;
    } catch {
      if (owner.exited) throw new Error(`${owner.label} exited: ${owner.tail()}`);
      if (Date.now() > deadline) throw new Error(`${owner.label} did not listen on ${port} within ${timeoutMs / 1000} s: ${owner.tail()}`);
      await delay(100);
    }
  }
}
