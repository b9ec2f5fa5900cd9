import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import type { Options, ScenarioName } from './args.js';
import { median } from './stats.js';

/** The paths whose medians are ratio denominators, in table order. */
export const BASELINES = ['direct', 'relay', 'chain', 'ssh'] as const;
export type BaselineName = (typeof BASELINES)[number];

/** One path's figure for one metric across the measured rounds. */
export interface Row {
  /** 'direct', 'relay', 'chain', 'ssh', 'library', 'cli', or a labelled variant such as 'library (flows in 1 VC)'. */
  path: string;
  /** Rows are compared (ratios) only with baseline rows of the same metric. */
  metric: string;
  unit: string;
  /** One value per measured round, in round order. */
  samples: number[];
  median: number;
  /** This row's median divided by the same metric's baseline median; absent when there is no such baseline. */
  ratios: Partial<Record<BaselineName, number>>;
}

export interface Skip {
  path: string;
  reason: string;
}

export interface ScenarioReport {
  name: ScenarioName;
  title: string;
  rows: Row[];
  /** Further figures kept in the JSON but not printed (e.g. each direction of a bulk run). */
  detail: Row[];
  /** Paths that could not run (not built yet, or failed); the rest of the scenario still ran. */
  skipped: Skip[];
  notes: string[];
  /** 1-, 5- and 15-minute load averages when the scenario started and ended (2 cores: above ~2 means other work competed). */
  loadAvg?: { start: number[]; end: number[] };
}

export interface TargetResult {
  id: string;
  description: string;
  value: number | null;
  threshold: number;
  comparison: '>=' | '<=';
  unit: string;
  /** null when the figure could not be measured in this run. */
  pass: boolean | null;
  detail: string;
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  options: Options;
  machine: { cpus: number; cpuModel: string; memoryMiB: number; node: string; platform: string };
  /** 1-, 5- and 15-minute load averages at the start and the end of the run. */
  loadAvg: { start: number[]; end: number[] };
  scenarios: ScenarioReport[];
  targets: TargetResult[];
}

/** Collects per-round samples keyed by (path, metric) and turns them into rows with ratios. */
export class SampleTable {
  private readonly entries = new Map<string, { path: string; metric: string; unit: string; samples: number[] }>();

  add(path: string, metric: string, unit: string, value: number): void {
    const key = `${path}\u0000${metric}`;
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { path, metric, unit, samples: [] };
      this.entries.set(key, entry);
    }
    entry.samples.push(value);
  }

  rows(): Row[] {
    const rows: Row[] = [...this.entries.values()].map((e) => ({ ...e, median: median(e.samples), ratios: {} }));
    for (const row of rows) {
      for (const base of BASELINES) {
        const denominator = rows.find((r) => r.path === base && r.metric === row.metric);
        // A zero baseline (direct TCP's added latency) gives no meaningful ratio, nor a negative one
        // (ssh's added p99 can come out below direct's when the machine is busy).
        if (denominator && denominator.median > 0 && Number.isFinite(denominator.median)) row.ratios[base] = row.median / denominator.median;
      }
    }
    return rows;
  }
}

/** 1-, 5- and 15-minute load averages, two decimals. */
export function loadAverage(): number[] {
  return loadavg().map((v) => Math.round(v * 100) / 100);
}

export function machineInfo(): BenchReport['machine'] {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model ?? 'unknown',
    memoryMiB: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

/** Writes the report to bench/results/<timestamp>.json (git-ignored) and returns the path. */
export async function writeReport(report: BenchReport): Promise<string> {
  // dist/bench/harness/results.js -> <repo>/bench/results/
  const dir = new URL('../../../bench/results/', import.meta.url);
  await mkdir(dir, { recursive: true });
  const file = new URL(`${report.startedAt.replace(/[:.]/g, '-')}.json`, dir);
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  return file.pathname;
}
