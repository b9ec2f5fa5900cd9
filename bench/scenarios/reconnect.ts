import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from '../harness/children.js';
import { SampleTable, type ScenarioReport, type Skip } from '../harness/results.js';
import { percentileOfSorted, sorted } from '../harness/stats.js';
import { delay } from '../lib/payload.js';
import { ridproxyProblem } from '../lib/ridproxy.js';
import { BIN, cliProblem, cliProcess } from '../paths/cli.js';
import { freePort, type OutputProcess } from '../paths/process.js';
import type { Context } from '../paths/topology.js';
import type { FleetApi, FleetSnapshot } from '../workers/fleet.js';

export const REREG_P50 = 're-registered after restart, p50';
export const REREG_P99 = 're-registered after restart, p99';
export const REREG_MAX = 're-registered after restart, max';
export const WITHIN = 'servers back within 3 s';
/** The issue's bound: every server registered again within this long of the proxy's return. */
export const RECONNECT_BOUND_MS = 3_000;
/** Outage lengths, full run and --quick. */
export const RECONNECT_OUTAGES_S = { full: [5, 30], quick: [5] } as const;
export function outageLabel(seconds: number): string {
  return `${seconds} s outage`;
}

const MiB = 2 ** 20;
/** Servers per fleet process: 5,000 in 4 processes, 1,000 in 2 (the machine has 2 cores; more processes only add switching). */
const SERVERS_PER_PROCESS = 1_250;
const MIN_PROCESSES = 2;
/** Initial registrations in flight per fleet process. */
const CONCURRENCY = 50;
/** How long after the restart a server may take before the round gives up on it. */
const STORM_TIMEOUT_MS = 60_000;
/** CPU and RSS of the proxy, and its metrics, are read this often during the storm. */
const SAMPLE_MS = 500;
const POLL_MS = 250;
const HISTOGRAM_BUCKET_MS = 500;

function message(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

const CLOCK_TICKS = ((): number => {
  const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(out.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** CPU ticks (user + system) and RSS of a process, from /proc; undefined once it is gone. */
function readProc(pid: number): { cpuSeconds: number; rssBytes: number; peakRssBytes: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3: utime is 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
    return { cpuSeconds: ticks / CLOCK_TICKS, rssBytes: kib('VmRSS'), peakRssBytes: kib('VmHWM') };
  } catch {
    return undefined;
  }
}

/** The kernel's counts of connections its listen queues dropped (all sockets in this network namespace). */
function listenDrops(): { overflows: number; drops: number } {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0].split(/\s+/);
    const values = lines[1].split(/\s+/).map(Number);
    return { overflows: values[names.indexOf('ListenOverflows')] ?? Number.NaN, drops: values[names.indexOf('ListenDrops')] ?? Number.NaN };
  } catch {
    return { overflows: Number.NaN, drops: Number.NaN };
  }
}

/** Busy and total CPU time of the whole machine (all cores), in seconds, from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: (total - v[3] - v[4]) / CLOCK_TICKS, total: total / CLOCK_TICKS };
  } catch {
    return { busy: Number.NaN, total: Number.NaN };
  }
}

/** `name{labels}` -> value for every sample of a Prometheus text page (the bench's own use; the tests use a real parser). */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** Sum of every series of `name` (any labels). */
function sumOf(metrics: Map<string, number>, name: string): number {
  let sum = 0;
  for (const [key, value] of metrics) if (key === name || key.startsWith(`${name}{`)) sum += value;
  return sum;
}

function scrape(port: number): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/metrics', timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(parseMetrics(body)) : reject(new Error(`/metrics answered ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('/metrics did not answer within 5 s')));
    req.on('error', reject);
  });
}

/** A `proxy start` process, with what its JSON log lines (info level) said counted as they come. */
interface ProxyRun {
  proc: OutputProcess;
  pid: number;
  /** Wall ms at which its endpoint line reached us. */
  endpointAt: number;
  /** The `time` of its "proxy listening" line (pino, wall ms): just before it prints the endpoint, after it listens. */
  listeningAt: number | undefined;
  log: { registered: number; unregistered: number; refused: number; refusedBy: Record<string, number>; errors: number; lastRegisteredAt: number | undefined };
  /** A signal the proxy logged receiving: never sent by this scenario (it SIGKILLs), so another process on the machine did. */
  signalled: string | undefined;
  /** Set when this scenario kills it; an exit without it is a crash or someone else's doing. */
  killedByUs: boolean;
  /** Wall ms of the last chunk read from its stderr. */
  lastStderrAt: number;
}

/**
 * What the process is doing, for a proxy that stops making progress: its scheduler state
 * (R running, S sleeping, T stopped, D in uninterruptible I/O), the kernel function it waits
 * in, and the system call its main thread is in (number first; x86-64: 232 epoll_wait, 202 futex, 1 write).
 */
function processState(pid: number): string {
  const read = (file: string): string => {
    try {
      return readFileSync(`/proc/${pid}/${file}`, 'utf8').trim();
    } catch (err) {
      return `(${message(err)})`;
    }
  };
  const stat = read('stat');
  const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  return `state ${state}, wchan ${read('wchan')}, syscall ${read('syscall').split(' ').slice(0, 3).join(' ')}`;
}

/** Throws if the proxy was signalled or exited behind the scenario's back: the round's figures would mean nothing. */
function checkProxy(run: ProxyRun): void {
  if (run.signalled) throw new Error(`${run.proc.label} was sent ${run.signalled} by another process on the machine (its log says so); run again`);
  if (run.proc.exited && !run.killedByUs) throw new Error(`${run.proc.label} exited (${run.proc.child.signalCode ?? `code ${run.proc.child.exitCode}`}): ${run.proc.tail()}`);
}

/**
 * BENCH_CPU_PROF=<dir>: cliProcess runs the proxy with --cpu-prof (into <dir>/cli-start), and the
 * last one is stopped with SIGTERM, not SIGKILL, so it writes the profile of the last storm.
 */
const PROFILE_DIR = process.env.BENCH_CPU_PROF;
/** `--max-handshakes` for the proxy, to compare caps on one machine at one load (a huge one is the proxy before the cap); absent, its default. */
const MAX_HANDSHAKES = process.env.BENCH_RECONNECT_MAX_HANDSHAKES;

async function startProxy(args: string[], label: string): Promise<ProxyRun> {
  const proc = cliProcess(label, args);
  const run: ProxyRun = {
    proc,
    pid: proc.child.pid ?? -1,
    endpointAt: Number.NaN,
    listeningAt: undefined,
    log: { registered: 0, unregistered: 0, refused: 0, refusedBy: {}, errors: 0, lastRegisteredAt: undefined },
    signalled: undefined,
    killedByUs: false,
    lastStderrAt: Date.now(),
  };
  let seen = '';
  proc.child.stdout?.on('data', function onData(chunk: Buffer) {
    seen += chunk.toString('utf8');
    if (!seen.includes('\n')) return;
    run.endpointAt = Date.now();
    proc.child.stdout?.off('data', onData);
  });
  let partial = '';
  proc.child.stderr?.on('data', (chunk: Buffer) => {
    run.lastStderrAt = Date.now();
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      let entry: { event?: string; msg?: string; time?: number; level?: number; kind?: string; code?: string; suppressed?: number; signal?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue;
      }
      if ((entry.level ?? 0) >= 50) run.log.errors++;
      if (entry.msg === 'proxy listening') run.listeningAt = entry.time;
      if (entry.signal !== undefined) run.signalled ??= entry.signal;
      if (entry.event === 'registered') {
        run.log.registered++;
        run.log.lastRegisteredAt = entry.time;
      } else if (entry.event === 'unregistered') run.log.unregistered++;
      else if (entry.event === 'refused') {
        // A summary line ("N more like this") stands for `suppressed` refusals.
        const n = entry.suppressed ?? 1;
        run.log.refused += n;
        const key = `${entry.kind}/${entry.code}`;
        run.log.refusedBy[key] = (run.log.refusedBy[key] ?? 0) + n;
      }
    }
  });
  // Rejects, with the output's tail, if it exits first or takes too long.
  await proc.waitFor('endpoint', () => (Number.isFinite(run.endpointAt) ? true : undefined), 15_000);
  return run;
}

async function killProxy(run: ProxyRun, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  run.killedByUs = true;
  if (run.proc.exited) return;
  const exited = once(run.proc.child, 'exit');
  run.proc.child.kill(signal);
  await exited;
}

interface RoundResult {
  outageS: number;
  servers: number;
  /** ms from the endpoint line to each server's registration; Infinity for one not back within the timeout. */
  times: number[];
  cpuPeakPercent: number;
  cpuMeanPercent: number;
  cpuSeconds: number;
  peakRssMiB: number;
  lagMaxMs: number;
  refusals: number;
  refusalsByKind: Record<string, number>;
  handshakeFailures: number;
  registrationsGauge: number;
  failedAttempts: Record<string, number>;
  lostAgain: number;
  attemptsAfterRestart: number;
  outageAttemptsPerSecond: number;
  listenOverflows: number;
  logged: ProxyRun['log'];
  listeningToEndpointMs: number;
  /** CPU seconds the fleet processes used, together, from the restart until all were back. */
  fleetCpuSeconds: number;
  /** The longest event-loop delay in any fleet process during the storm. */
  fleetLagMaxMs: number;
  /** Busy share of the whole machine (both cores, everything on it) during the storm. */
  machineBusyPercent: number;
  /** No server came back for 3 s while some were still missing. */
  stalled: boolean;
}

function merge(snapshots: FleetSnapshot[]): {
  reRegisteredAt: Array<number | null>;
  failures: Record<string, number>;
  lost: number;
  attempts: number;
  stopped: number;
  examples: Record<string, string[]>;
} {
  const failures: Record<string, number> = {};
  for (const s of snapshots) for (const [code, n] of Object.entries(s.failuresSince)) failures[code] = (failures[code] ?? 0) + n;
  return {
    reRegisteredAt: snapshots.flatMap((s) => s.reRegisteredAt),
    failures,
    lost: snapshots.reduce((n, s) => n + s.lostSince, 0),
    attempts: snapshots.reduce((n, s) => n + s.attemptsSince, 0),
    stopped: snapshots.reduce((n, s) => n + s.stopped, 0),
    examples: Object.assign({}, ...snapshots.map((s) => s.examples)) as Record<string, string[]>,
  };
}

interface Fleet {
  args: string[];
  metricsPort: number;
  servers: number;
  workers: Array<Worker<FleetApi>>;
  proxy: ProxyRun;
  restarts: number;
}

/** Kills the proxy, waits `outageS`, starts it again on the same port and identity, and times the servers' return. */
async function outageRound(ctx: Context, fleet: Fleet, outageS: number): Promise<RoundResult> {
  checkProxy(fleet.proxy);
  await Promise.all(fleet.workers.map((w) => w.call('mark', {}, 30_000)));
  const killedAt = Date.now();
  await killProxy(fleet.proxy);
  await delay(outageS * 1000 - (Date.now() - killedAt));
  // The fleets' event-loop lag is measured from here: the storm, not the losses at the kill.
  await Promise.all(fleet.workers.map((w) => w.call('progress', {}, 30_000)));
  const netBefore = listenDrops();
  fleet.restarts++;
  const proxy = await startProxy(fleet.args, `proxy start (restart ${fleet.restarts})`);
  fleet.proxy = proxy;
  const restartAt = proxy.endpointAt;
  const machineAtRestart = machineCpu();

  // CPU and RSS from /proc, event-loop lag from /metrics, every SAMPLE_MS until every server is back.
  let last = readProc(proxy.pid);
  const first = last;
  const firstAt = Date.now();
  let lastAt = firstAt;
  let cpuPeak = 0;
  let lagMax = 0;
  let scraping = false;
  let lastMetrics: Map<string, number> | undefined;
  const sample = (): void => {
    const now = readProc(proxy.pid);
    const at = Date.now();
    if (now && last && at > lastAt) cpuPeak = Math.max(cpuPeak, ((now.cpuSeconds - last.cpuSeconds) * 1000) / (at - lastAt));
    if (now) {
      last = now;
      lastAt = at;
    }
    if (scraping) return;
    scraping = true;
    scrape(fleet.metricsPort).then(
      (m) => {
        lastMetrics = m;
        lagMax = Math.max(lagMax, m.get('nodejs_eventloop_lag_max_seconds') ?? 0);
        scraping = false;
      },
      () => {
        scraping = false;
      },
    );
  };
  const sampler = setInterval(sample, SAMPLE_MS);
  let fleetCpuAtRestart: number | undefined;
  let fleetCpu = Number.NaN;
  let fleetLagMax = 0;
  let lastBack = 0;
  let lastProgressAt = Date.now();
  let stallReports = 0;
  let stalled = false;
  try {
    for (;;) {
      const progress = await Promise.all(fleet.workers.map((w) => w.call('progress', {}, 30_000)));
      fleetCpu = progress.reduce((n, p) => n + p.cpuSeconds, 0);
      fleetCpuAtRestart ??= fleetCpu;
      fleetLagMax = Math.max(fleetLagMax, ...progress.map((p) => p.lagMaxMs));
      const back = progress.reduce((n, p) => n + p.back, 0);
      if (back > lastBack) {
        lastBack = back;
        lastProgressAt = Date.now();
      } else if (Date.now() - lastProgressAt > 3_000 && stallReports < 3) {
        // Nobody came back for 3 s with servers still missing: say what the proxy is doing.
        stallReports++;
        lastProgressAt = Date.now();
        stalled = true;
        ctx.log(`    STALL at +${Date.now() - restartAt} ms, ${back}/${fleet.servers} back: proxy ${processState(proxy.pid)}; its last log line ${Date.now() - proxy.lastStderrAt} ms ago`);
        // BENCH_RECONNECT_GDB=1: the proxy's native stacks too, once (how the Node 20 keygen deadlock was found).
        if (stallReports === 1 && process.env.BENCH_RECONNECT_GDB) {
          const gdb = spawnSync('gdb', ['-p', String(proxy.pid), '-batch', '-ex', 'info threads', '-ex', 'thread apply all bt 25'], { encoding: 'utf8', timeout: 60_000 });
          ctx.log(`      gdb:\n${gdb.stdout}\n${gdb.stderr}`);
        }
      }
      if (back === fleet.servers || Date.now() - restartAt > STORM_TIMEOUT_MS || progress.some((p) => p.stopped > 0)) break;
      await delay(POLL_MS);
    }
    sample();
  } finally {
    clearInterval(sampler);
  }
  checkProxy(proxy);
  const merged = merge(await Promise.all(fleet.workers.map((w) => w.call('snapshot', { since: restartAt }, 30_000))));
  const end = readProc(proxy.pid);
  const endAt = Date.now();
  const machineAtEnd = machineCpu();
  const cpuSeconds = end && first ? end.cpuSeconds - first.cpuSeconds : Number.NaN;
  // One scrape after the storm for the counters (they only grow) and the lag since the last one.
  const final = await scrape(fleet.metricsPort).catch(() => lastMetrics);
  if (final) lagMax = Math.max(lagMax, final.get('nodejs_eventloop_lag_max_seconds') ?? 0);
  const netAfter = listenDrops();
  const outageSnap = merge(await Promise.all(fleet.workers.map((w) => w.call('snapshot', { since: killedAt }, 30_000))));
  const outageFailures = Object.values(outageSnap.failures).reduce((a, b) => a + b, 0) - Object.values(merged.failures).reduce((a, b) => a + b, 0);
  const times = merged.reRegisteredAt.map((t) => (t === null ? Number.POSITIVE_INFINITY : t - restartAt));
  const refusalsByKind: Record<string, number> = {};
  for (const [key, value] of final ?? []) {
    const m = /^ridproxy_refusals_total\{(.*)\}$/.exec(key);
    if (m && value > 0) refusalsByKind[m[1].replace(/"/g, '')] = value;
  }

  const result: RoundResult = {
    outageS,
    servers: fleet.servers,
    times,
    cpuPeakPercent: cpuPeak * 100,
    cpuMeanPercent: (cpuSeconds * 1000 * 100) / Math.max(1, endAt - firstAt),
    cpuSeconds,
    peakRssMiB: (end?.peakRssBytes ?? Number.NaN) / MiB,
    lagMaxMs: lagMax * 1000,
    refusals: final ? sumOf(final, 'ridproxy_refusals_total') : Number.NaN,
    refusalsByKind,
    handshakeFailures: final ? sumOf(final, 'ridproxy_handshake_failures_total') : Number.NaN,
    registrationsGauge: final?.get('ridproxy_registrations') ?? Number.NaN,
    failedAttempts: merged.failures,
    lostAgain: merged.lost,
    attemptsAfterRestart: merged.attempts,
    outageAttemptsPerSecond: outageFailures / Math.max(0.001, (restartAt - killedAt) / 1000),
    listenOverflows: netAfter.overflows - netBefore.overflows,
    logged: { ...proxy.log, refusedBy: { ...proxy.log.refusedBy } },
    listeningToEndpointMs: proxy.listeningAt === undefined ? Number.NaN : restartAt - proxy.listeningAt,
    fleetCpuSeconds: fleetCpu - (fleetCpuAtRestart ?? Number.NaN),
    fleetLagMaxMs: fleetLagMax,
    stalled,
    machineBusyPercent: ((machineAtEnd.busy - machineAtRestart.busy) / (machineAtEnd.total - machineAtRestart.total)) * 100,
  };
  logRound(ctx, result, merged.stopped);
  if (Object.keys(merged.failures).length > 0) ctx.log(`    last failures: ${JSON.stringify(merged.examples)}`);
  return result;
}

function logRound(ctx: Context, r: RoundResult, stopped: number): void {
  const s = sorted(r.times);
  const ms = (v: number): string => (Number.isFinite(v) ? `${Math.round(v)} ms` : 'not back');
  const buckets: number[] = [];
  for (const t of s) {
    const b = Number.isFinite(t) ? Math.max(0, Math.floor(t / HISTOGRAM_BUCKET_MS)) : -1;
    if (b >= 0) buckets[b] = (buckets[b] ?? 0) + 1;
  }
  const missing = s.filter((t) => !Number.isFinite(t)).length;
  ctx.log(
    `  ${outageLabel(r.outageS)}: ${r.servers - missing}/${r.servers} back; p50 ${ms(percentileOfSorted(s, 50))}, p99 ${ms(percentileOfSorted(s, 99))}, max ${ms(s[s.length - 1])}; ` +
      `${s.filter((t) => t <= RECONNECT_BOUND_MS).length} within 3 s${stopped > 0 ? `; ${stopped} STOPPED` : ''}`,
  );
  ctx.log(`    per ${HISTOGRAM_BUCKET_MS} ms after the endpoint: ${Array.from(buckets, (n) => n ?? 0).join(' ')}`);
  ctx.log(
    `    proxy: CPU peak ${r.cpuPeakPercent.toFixed(0)}%, mean ${r.cpuMeanPercent.toFixed(0)}% (${r.cpuSeconds.toFixed(2)} s), peak RSS ${r.peakRssMiB.toFixed(1)} MiB, ` +
      `event-loop lag max ${r.lagMaxMs.toFixed(0)} ms; refusals ${r.refusals} ${JSON.stringify(r.refusalsByKind)}, handshake failures ${r.handshakeFailures}, ` +
      `registrations ${r.registrationsGauge}; logged ${r.logged.registered} registered, ${r.logged.refused} refused ${JSON.stringify(r.logged.refusedBy)}, ${r.logged.errors} errors`,
  );
  ctx.log(
    `    servers: ${r.attemptsAfterRestart} attempts after the restart, failed ${JSON.stringify(r.failedAttempts)}, ${r.lostAgain} lost again; ` +
      `${r.outageAttemptsPerSecond.toFixed(0)} attempts/s during the outage; listen queue overflows ${r.listenOverflows}; listening line to endpoint ${r.listeningToEndpointMs} ms`,
  );
  ctx.log(`    fleet processes: ${r.fleetCpuSeconds.toFixed(2)} CPU s during the storm, event-loop lag max ${r.fleetLagMaxMs.toFixed(0)} ms; machine ${r.machineBusyPercent.toFixed(0)}% busy`);
}

/**
 * Recovery after a proxy restart: a real `proxy start` (bin/proxy.js, info-level JSON logs,
 * --metrics) with N servers registered by PersistentRegistration (as `proxy serve` does), spread
 * over a few processes. Each round SIGKILLs the proxy, waits an outage, starts it again on the
 * same port with the same identity file (so the servers' endpoint stays valid), and times each
 * server from the moment the new proxy's endpoint line arrives until that server is registered
 * again; meanwhile it reads the proxy's CPU and RSS from /proc and its metrics (refusals,
 * handshake failures, event-loop lag). Measured with the library's default backoff (first retry at
 * once, then doubling from 100 ms with equal jitter, capped at 2 s).
 */
export async function reconnectScenario(ctx: Context): Promise<ScenarioReport> {
  const servers = ctx.options.quick ? 1_000 : 5_000;
  const outages = ctx.options.quick ? RECONNECT_OUTAGES_S.quick : RECONNECT_OUTAGES_S.full;
  const processes = Math.max(MIN_PROCESSES, Math.ceil(servers / SERVERS_PER_PROCESS));
  const table = new SampleTable();
  const detail = new SampleTable();
  const skipped: Skip[] = [];
  const cap = servers + 100;
  const notes = [
    `${servers.toLocaleString('en-US')} servers, each a Manager (own identity, own hop connection) kept registered by PersistentRegistration with its defaults (what \`proxy serve\` uses), in ${processes} processes on the same 2 cores as the proxy`,
    'each round SIGKILLs `proxy start`, waits the outage, starts it again on the same port and identity file; times are from the moment its endpoint line reached the bench to each server\'s `registered` event (wall clock, one machine)',
    `the proxy runs as a user would (bin/proxy.js, --log-level info: one JSON line per registration, --metrics) except the caps all ${servers.toLocaleString('en-US')} servers from 127.0.0.1 would hit: --max-connections, --max-connections-per-address and --max-registrations ${cap.toLocaleString('en-US')}`,
    `proxy CPU: user + system time from /proc over ${SAMPLE_MS} ms windows (peak) and from the endpoint line until the last server was back (mean); peak RSS is VmHWM of the restarted process; lag is the max of nodejs_eventloop_lag_max_seconds over scrapes every ${SAMPLE_MS} ms`,
    'refusals and handshake failures: ridproxy_refusals_total and ridproxy_handshake_failures_total of the restarted proxy once all servers were back; failed attempts are the servers\' own count after the restart',
    'the servers\' processes do the other end of every handshake on the same 2 cores: their CPU during the storm, the whole machine\'s busy share and the host-wide listen-queue overflows are in the JSON (detail)',
    `hop handshakes in progress at once: ${MAX_HANDSHAKES === undefined ? 'the default --max-handshakes' : `--max-handshakes ${MAX_HANDSHAKES} (BENCH_RECONNECT_MAX_HANDSHAKES)`}`,
    'no server back for 3 s while some are missing is logged as a STALL with the proxy\'s scheduler state (BENCH_RECONNECT_GDB=1 adds its native stacks); a proxy signalled by another process on the machine ends the scenario, reported',
  ];
  if (!ctx.options.paths.includes('cli') && !ctx.options.paths.includes('library')) {
    return { name: 'reconnect', title: 'reconnect', rows: [], detail: [], skipped: [{ path: 'cli', reason: 'needs the cli or library path selected' }], notes };
  }
  const problem = cliProblem() ?? (await ridproxyProblem());
  if (problem) {
    return { name: 'reconnect', title: 'reconnect', rows: [], detail: [], skipped: [{ path: 'cli', reason: problem }], notes };
  }
  const dir = mkdtempSync(join(tmpdir(), 'ridproxy-reconnect-'));
  const workers: Array<Worker<FleetApi>> = [];
  let fleet: Fleet | undefined;
  try {
    const keygen = spawnSync(process.execPath, [BIN, 'keygen', '--out', join(dir, 'proxy.pem')], { encoding: 'utf8', timeout: 10_000 });
    if (keygen.status !== 0) throw new Error(`proxy keygen failed: ${keygen.stderr}`);
    const port = await freePort();
    const metricsPort = await freePort();
    const args = [
      'start',
      '--listen', `127.0.0.1:${port}`,
      '--identity', join(dir, 'proxy.pem'),
      '--max-connections', String(cap),
      '--max-connections-per-address', String(cap),
      '--max-registrations', String(cap),
      '--metrics', `127.0.0.1:${metricsPort}`,
      '--log-level', 'info',
      ...(MAX_HANDSHAKES === undefined ? [] : ['--max-handshakes', MAX_HANDSHAKES]),
    ];
    const proxy = await startProxy(args, 'proxy start');
    const endpoint = proxy.proc.stdout.split('\n')[0].trim();
    workers.push(...(await Promise.all(Array.from({ length: processes }, (_, i) => Worker.start<FleetApi>('fleet', `servers ${i + 1}`)))));
    fleet = { args, metricsPort, servers, workers, proxy, restarts: 0 };
    const started = Date.now();
    const per = Math.ceil(servers / processes);
    const registered = await Promise.all(
      workers.map((w, i) => {
        const count = Math.min(per, servers - i * per);
        return w.call('start', { proxyEndpoint: endpoint, count, concurrency: CONCURRENCY }, 60_000 + count * 50);
      }),
    );
    checkProxy(proxy);
    const failed = registered.reduce((n, r) => n + r.failures, 0);
    if (failed > 0) throw new Error(`${failed} of ${servers} first registrations failed; first: ${registered.find((r) => r.firstError)?.firstError}`);
    const gauge = (await scrape(metricsPort)).get('ridproxy_registrations');
    if (gauge !== servers) throw new Error(`the proxy reports ${gauge} registrations, not ${servers}`);
    ctx.log(`  ${servers} servers registered in ${((Date.now() - started) / 1000).toFixed(1)} s (${processes} processes)`);

    for (let round = 0; round < ctx.options.rounds; round++) {
      for (const outageS of outages) {
        const r = await outageRound(ctx, fleet, outageS);
        const path = outageLabel(outageS);
        const s = sorted(r.times);
        table.add(path, REREG_P50, 'ms', percentileOfSorted(s, 50));
        table.add(path, REREG_P99, 'ms', percentileOfSorted(s, 99));
        table.add(path, REREG_MAX, 'ms', s[s.length - 1]);
        table.add(path, WITHIN, `of ${servers.toLocaleString('en-US')}`, s.filter((t) => t <= RECONNECT_BOUND_MS).length);
        table.add(path, 'proxy CPU, peak 500 ms', '%', r.cpuPeakPercent);
        table.add(path, 'proxy CPU, mean until all back', '%', r.cpuMeanPercent);
        table.add(path, 'proxy CPU per re-registration', 'ms', (r.cpuSeconds * 1000) / r.servers);
        table.add(path, 'proxy peak RSS', 'MiB', r.peakRssMiB);
        table.add(path, 'proxy event-loop lag, max', 'ms', r.lagMaxMs);
        table.add(path, 'refusals', 'count', r.refusals);
        table.add(path, 'handshake failures', 'count', r.handshakeFailures);
        table.add(path, 'failed attempts after restart', 'count', Object.values(r.failedAttempts).reduce((a, b) => a + b, 0));
        detail.add(path, 'registrations lost again after restart', 'count', r.lostAgain);
        detail.add(path, 'attempts after restart', 'count', r.attemptsAfterRestart);
        detail.add(path, 'attempts during the outage', '/s', r.outageAttemptsPerSecond);
        detail.add(path, 'listen queue overflows (host-wide)', 'count', r.listenOverflows);
        detail.add(path, 'registrations logged by the proxy', 'count', r.logged.registered);
        detail.add(path, 'refusals logged by the proxy', 'count', r.logged.refused);
        detail.add(path, 'registrations gauge when all back', 'count', r.registrationsGauge);
        detail.add(path, 'fleet processes CPU during the storm', 's', r.fleetCpuSeconds);
        detail.add(path, 'fleet event-loop lag, max', 'ms', r.fleetLagMaxMs);
        detail.add(path, 'machine busy during the storm (all cores)', '%', r.machineBusyPercent);
        detail.add(path, 'stalled (no server back for 3 s)', 'rounds', r.stalled ? 1 : 0);
      }
    }
  } catch (err) {
    skipped.push({ path: 'cli', reason: message(err) });
  } finally {
    for (const w of workers) w.kill();
    if (fleet) await killProxy(fleet.proxy, PROFILE_DIR === undefined ? 'SIGKILL' : 'SIGTERM').catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    name: 'reconnect',
    title: `reconnect: ${servers.toLocaleString('en-US')} servers registering again after a proxy restart (${outages.map((s) => `${s} s`).join(' and ')} outage, ${ctx.options.rounds} rounds)`,
    rows: table.rows(),
    detail: detail.rows(),
    skipped,
    notes,
  };
}
