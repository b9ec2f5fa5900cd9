/**
 * Summarises the V8 CPU profiles a profiled bench run wrote (`BENCH_CPU_PROF=<dir> npm run bench
 * ...`: one per worker in <dir>, one per CLI process in <dir>/cli-<command>/):
 *
 *   node dist/bench/profile-summary.js <dir> [--top N]
 *
 * For each profile: which process it is, the time sampled, the share spent busy (not idle), the
 * garbage collector's share of the busy time, and the top entries by self time (as a share of the
 * busy time), each named by function and by file relative to the repository (or `node:` module),
 * so the output holds no machine paths. Then the self time of Node's stream, event, socket and tick
 * machinery (categories `node streams, events, net` and `node ticks, timers`) by the nearest
 * ridproxy frame above it: what each of ridproxy's layers pays for the Node streams it uses
 * ("(no ridproxy frame)" is socket I/O called from libuv, and timers).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

interface ProfileEntry {
  name: string;
  /** Self time as a share of the busy (non-idle) time. */
  share: number;
}

interface ProfileSummary {
  process: string;
  file: string;
  sampledMs: number;
  busyMs: number;
  gcShare: number;
  /** Self time by kind of code (categoryOf), as shares of the busy time. */
  categories: Array<[string, number]>;
  top: ProfileEntry[];
  /** Stream, event and tick machinery by the nearest ridproxy frame above it, as shares of the busy time. */
  machineryByCaller: ProfileEntry[];
  machineryShare: number;
}

const MACHINERY = new Set(['node streams, events, net', 'node ticks, timers']);

/**
 * What kind of work a frame is: the collector, node:crypto (its JS and the native calls it
 * makes), socket writes (native writeBuffer/writev: mostly the kernel's send), Node's streams and
 * events, ridproxy's own code (src/), and the rest.
 */
function categoryOf(frame: CallFrame): string {
  const { functionName: fn, url } = frame;
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(program)') return 'program';
  if (url.startsWith('node:internal/crypto')) return 'crypto';
  if (url === '' && /^(writeBuffer|writev|writeLatin1String|writeUtf8String|writeAsciiString)$/.test(fn)) return 'socket writes';
  if (url.startsWith('node:internal/streams') || url === 'node:stream' || url === 'node:events' || url.startsWith('node:internal/stream_base_commons') || url === 'node:net') return 'node streams, events, net';
  if (url.startsWith('node:internal/process/task_queues') || url.startsWith('node:internal/async_hooks') || url.startsWith('node:internal/timers')) return 'node ticks, timers';
  if (url.includes('/src/')) return 'ridproxy src';
  if (url.includes('/bench/')) return 'bench';
  if (url.startsWith('node:') || url === '') return 'node other';
  return 'other';
}

function findProfiles(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...findProfiles(path));
    else if (name.endsWith('.cpuprofile')) found.push(path);
  }
  return found.sort();
}

/** A url as a repository-relative file (dist/ dropped) or a node: module; no machine path survives. */
function shortUrl(url: string): string {
  if (url === '') return '';
  if (url.startsWith('node:')) return url;
  const path = url.replace(/^file:\/\//, '');
  const inRepo = path.match(/\/(?:dist\/)?((?:src|bench|bin|test)\/.*)$/);
  if (inRepo) return inRepo[1];
  const inModules = path.match(/\/node_modules\/(.*)$/);
  if (inModules) return inModules[1];
  return basename(path);
}

function entryName(frame: CallFrame): string {
  const fn = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  const file = shortUrl(frame.url);
  return file === '' ? fn : `${fn} ${file}:${frame.lineNumber + 1}`;
}

/** Which process wrote the profile: the CLI command its directory names, else the bench worker whose file it ran. */
function processOf(path: string, profile: CpuProfile, root: string): string {
  const dir = relative(root, path).split('/')[0];
  if (dir.startsWith('cli-')) return `cli ${dir.slice(4)}`;
  for (const node of profile.nodes) {
    const worker = node.callFrame.url.match(/bench\/workers\/([\w-]+)\.js$/);
    if (worker) return `worker ${worker[1]}`;
  }
  return 'unknown';
}

function summarise(path: string, root: string, top: number): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, ProfileNode>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node);
  const callerOf = (node: ProfileNode): string => {
    for (let up = parentOf.get(node.id); up !== undefined; up = parentOf.get(up.id)) {
      if (categoryOf(up.callFrame) === 'ridproxy src') return entryName(up.callFrame);
    }
    return '(no ridproxy frame)';
  };
  const machinery = new Map<string, number>();
  const self = new Map<string, number>();
  const byCategory = new Map<string, number>();
  let total = 0;
  let idle = 0;
  let gc = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    // Each delta is the time from the previous sample to this one: attributed to this sample.
    const dt = profile.timeDeltas[i] ?? 0;
    if (node === undefined) continue;
    total += dt;
    const fn = node.callFrame.functionName;
    if (fn === '(idle)') {
      idle += dt;
      continue;
    }
    if (fn === '(garbage collector)') gc += dt;
    const category = categoryOf(node.callFrame);
    byCategory.set(category, (byCategory.get(category) ?? 0) + dt);
    if (MACHINERY.has(category)) {
      const caller = callerOf(node);
      machinery.set(caller, (machinery.get(caller) ?? 0) + dt);
    }
    const name = entryName(node.callFrame);
    self.set(name, (self.get(name) ?? 0) + dt);
  }
  const busy = total - idle;
  const ranked = (shares: Map<string, number>): ProfileEntry[] =>
    [...shares.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, share: busy > 0 ? us / busy : 0 }));
  return {
    process: processOf(path, profile, root),
    file: relative(root, path),
    sampledMs: total / 1000,
    busyMs: busy / 1000,
    gcShare: busy > 0 ? gc / busy : 0,
    categories: [...byCategory.entries()].sort((a, b) => b[1] - a[1]).map(([name, us]) => [name, busy > 0 ? us / busy : 0]),
    top: ranked(self),
    machineryByCaller: ranked(machinery),
    machineryShare: busy > 0 ? [...machinery.values()].reduce((sum, us) => sum + us, 0) / busy : 0,
  };
}

function percent(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

function main(argv: string[]): void {
  const dir = argv[0];
  if (dir === undefined) {
    process.stderr.write('usage: node dist/bench/profile-summary.js <dir> [--top N]\n');
    process.exitCode = 2;
    return;
  }
  const topAt = argv.indexOf('--top');
  const top = topAt >= 0 ? Number(argv[topAt + 1]) : 15;
  for (const path of findProfiles(dir)) {
    const s = summarise(path, dir, top);
    process.stdout.write(
      `\n## ${s.process} (${s.file}): ${(s.sampledMs / 1000).toFixed(1)} s sampled, ${percent(s.busyMs / Math.max(s.sampledMs, 1e-9))} busy, GC ${percent(s.gcShare)} of busy\n`,
    );
    process.stdout.write(`  by kind: ${s.categories.map(([name, share]) => `${name} ${percent(share)}`).join(', ')}\n`);
    for (const entry of s.top) process.stdout.write(`  ${percent(entry.share).padStart(6)}  ${entry.name}\n`);
    process.stdout.write(`  streams, events, ticks (${percent(s.machineryShare)} of busy) by the nearest ridproxy frame above:\n`);
    for (const entry of s.machineryByCaller) process.stdout.write(`  ${percent(entry.share).padStart(6)}  ${entry.name}\n`);
  }
}

main(process.argv.slice(2));
