import { fork, type ChildProcess } from 'node:child_process';
import type { RpcRequest, RpcResponse, WorkerApi } from './rpc.js';
import { READY } from './rpc.js';

/**
 * Every process the bench starts is tracked here, so one call (and the exit handler) kills them
 * all whatever failed: a leftover proxy or relay would skew the next run's figures.
 */
const live = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/**
 * BENCH_CPU_PROF=<dir>: every worker writes a V8 CPU profile (node --cpu-prof) into <dir> when it
 * exits; workers are then stopped by closing their channel, so they exit normally and write it.
 */
const PROFILE_DIR = process.env.BENCH_CPU_PROF;

/** Ends `child` now, or (when profiling) lets it exit on its own, which writes its profile, once its channel closes. */
function stop(child: ChildProcess): void {
  if (PROFILE_DIR === undefined) {
    child.kill('SIGKILL');
  } else if (child.connected) {
    child.disconnect();
    setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
  }
}

export function killAll(): void {
  for (const child of live) stop(child);
  live.clear();
}

let exitHandlersInstalled = false;
function installExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(130);
    });
  }
}

type Params<F> = F extends (params: infer P) => Promise<unknown> ? P : never;
type Result<F> = F extends (params: never) => Promise<infer R> ? R : never;

export type WorkerName = 'client' | 'sink' | 'relay' | 'proxy' | 'grpc-server' | 'fleet';

/** A forked bench worker (bench/workers/<name>.ts) and typed calls into its API. */
export class Worker<Api extends WorkerApi<Api>> {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
  private exitError: Error | undefined;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.on('message', (message: RpcResponse | string) => {
      if (typeof message === 'string') return;
      const call = this.pending.get(message.id);
      if (!call) return;
      this.pending.delete(message.id);
      clearTimeout(call.timer);
      if (message.ok) call.resolve(message.result);
      else call.reject(new Error(`${this.name}: ${message.error}`));
    });
    child.once('exit', (code, signal) => {
      this.exitError = new Error(`${this.name} exited (${signal ?? `code ${code}`})`);
      for (const call of this.pending.values()) {
        clearTimeout(call.timer);
        call.reject(this.exitError);
      }
      this.pending.clear();
    });
  }

  /** Forks dist/bench/workers/<file>.js and waits until it serves requests. */
  static async start<Api extends WorkerApi<Api>>(file: WorkerName, label: string = file, options: { maxOldSpaceMiB?: number } = {}): Promise<Worker<Api>> {
    installExitHandlers();
    const execArgv = ['--expose-gc'];
    if (options.maxOldSpaceMiB) execArgv.push(`--max-old-space-size=${options.maxOldSpaceMiB}`);
    if (PROFILE_DIR) execArgv.push('--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`);
    const child = track(fork(new URL(`../workers/${file}.js`, import.meta.url), [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`${label} did not start within 15 s`)), 15_000);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(err);
      };
      child.once('error', fail);
      child.once('exit', (code) => fail(new Error(`${label} exited during start (code ${code})`)));
      child.on('message', function onMessage(message: unknown) {
        if (message !== READY) return;
        clearTimeout(timer);
        child.off('message', onMessage);
        child.removeAllListeners('error');
        child.removeAllListeners('exit');
        resolve();
      });
    });
    return new Worker<Api>(label, child);
  }

  /** Calls `method` in the worker; rejects if it takes longer than `timeoutMs` (the worker is then killed: its state is unknown). */
  call<K extends keyof Api & string>(method: K, params: Params<Api[K]>, timeoutMs: number): Promise<Result<Api[K]>> {
    if (this.exitError) return Promise.reject(this.exitError);
    const id = this.nextId++;
    return new Promise<Result<Api[K]>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.kill();
        reject(new Error(`${this.name}.${method} timed out after ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve: (value) => resolve(value as Result<Api[K]>), reject, timer });
      const request: RpcRequest = { id, method, params };
      // With a callback a failed send (the worker just died) rejects this call instead of emitting an unhandled 'error'.
      this.child.send(request, (err) => {
        if (!err || !this.pending.delete(id)) return;
        clearTimeout(timer);
        reject(new Error(`${this.name}.${method}: ${err.message}`));
      });
    });
  }

  get alive(): boolean {
    return this.exitError === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(): void {
    if (!this.alive) return;
    stop(this.child);
    // Dead from now on, not only once its 'exit' arrives: a call in between (WorkerSlot starting
    // the next call after a timeout) would write to a closed channel, an EPIPE that kills the bench.
    this.exitError = new Error(`${this.name} was stopped`);
  }
}

/**
 * A worker that is started again on the next call if it died (a timed-out call kills it), so one
 * broken path does not take the measurements of the paths after it down too.
 */
export class WorkerSlot<Api extends WorkerApi<Api>> {
  private current: Worker<Api> | undefined;

  constructor(
    private readonly file: WorkerName,
    private readonly label: string = file,
  ) {}

  async call<K extends keyof Api & string>(method: K, params: Params<Api[K]>, timeoutMs: number): Promise<Result<Api[K]>> {
    if (!this.current?.alive) this.current = await Worker.start<Api>(this.file, this.label);
    return this.current.call(method, params, timeoutMs);
  }

  kill(): void {
    this.current?.kill();
  }
}

/** Kills the given workers (or anything with kill()), ignoring ones already gone. */
export function stopAll(workers: ReadonlyArray<{ kill(): void } | undefined>): void {
  for (const w of workers) w?.kill();
}
