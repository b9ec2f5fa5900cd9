import type { ScenarioName } from './args.js';
import type { BaselineName, Row, ScenarioReport, TargetResult } from './results.js';
import { ACTIVE_PEAK_OVER_BUDGET, FIXED_ALLOWANCE_MIB } from '../scenarios/active.js';
import { BULK_EIGHT, BULK_ONE, PER_CORE_EIGHT, PER_CORE_ONE } from '../scenarios/bulk.js';
import { FAIRNESS_RATIO } from '../scenarios/fairness.js';
import { BULK_LOADS, addedP99Metric } from '../scenarios/interactive.js';
import { P50_ADDED } from '../scenarios/latency.js';
import { LONGPATH_RTTS_MS, longpathMetric } from '../scenarios/longpath.js';
import { PER_IDLE_VC } from '../scenarios/memory.js';
import { RECONNECT_BOUND_MS, RECONNECT_OUTAGES_S, REREG_MAX, outageLabel } from '../scenarios/reconnect.js';
import { LIBRARY_PLAIN_VC, LIBRARY_VC, SETUP_METRIC } from '../scenarios/setup.js';

interface TargetSpec {
  id: string;
  description: string;
  scenario: ScenarioName;
  path: string;
  metric: string;
  /** Compare the row's ratio to this baseline instead of its median. */
  ratioTo?: BaselineName;
  comparison: '>=' | '<=';
  threshold: number;
  unit: string;
}

/** The issue's targets. */
const TARGETS: TargetSpec[] = [
  { id: 'bulk-1', description: 'library bulk, 1 flow, vs 2-process relay chain', scenario: 'bulk', path: 'library', metric: BULK_ONE, ratioTo: 'chain', comparison: '>=', threshold: 0.6, unit: 'x chain' },
  { id: 'bulk-8', description: 'library bulk, 8 flows, vs 2-process relay chain', scenario: 'bulk', path: 'library', metric: BULK_EIGHT, ratioTo: 'chain', comparison: '>=', threshold: 0.6, unit: 'x chain' },
  { id: 'latency-p50', description: 'library added p50 latency vs plain relay\'s', scenario: 'latency', path: 'library', metric: P50_ADDED, ratioTo: 'relay', comparison: '<=', threshold: 2, unit: 'x relay' },
  { id: 'vc-setup', description: 'library VC setups per second', scenario: 'setup', path: LIBRARY_VC, metric: SETUP_METRIC, comparison: '>=', threshold: 2000, unit: '/s' },
  { id: 'rss-per-vc', description: 'proxy RSS per idle VC', scenario: 'memory', path: 'library', metric: PER_IDLE_VC, comparison: '<=', threshold: 16, unit: 'KiB' },
  { id: 'active-rss', description: 'proxy peak RSS growth beyond its budget, active VCs (1,000; --quick 200), half stalled', scenario: 'active', path: 'library', metric: ACTIVE_PEAK_OVER_BUDGET, comparison: '<=', threshold: FIXED_ALLOWANCE_MIB, unit: 'MiB' },
  { id: 'fairness', description: 'library bulk beside a stalled flow / alone', scenario: 'fairness', path: 'library', metric: FAIRNESS_RATIO, comparison: '>=', threshold: 0.8, unit: 'ratio' },
  // The same targets for library-plain (encryption: false on both Managers). Memory has no plain
  // variant: the proxy forwards VC bytes without reading them, so its per-VC state is the same.
  { id: 'bulk-1-plain', description: 'library-plain bulk, 1 flow, vs chain', scenario: 'bulk', path: 'library-plain', metric: BULK_ONE, ratioTo: 'chain', comparison: '>=', threshold: 0.6, unit: 'x chain' },
  { id: 'bulk-8-plain', description: 'library-plain bulk, 8 flows, vs chain', scenario: 'bulk', path: 'library-plain', metric: BULK_EIGHT, ratioTo: 'chain', comparison: '>=', threshold: 0.6, unit: 'x chain' },
  { id: 'latency-p50-plain', description: 'library-plain added p50 latency vs relay\'s', scenario: 'latency', path: 'library-plain', metric: P50_ADDED, ratioTo: 'relay', comparison: '<=', threshold: 2, unit: 'x relay' },
  { id: 'vc-setup-plain', description: 'library-plain VC setups per second', scenario: 'setup', path: LIBRARY_PLAIN_VC, metric: SETUP_METRIC, comparison: '>=', threshold: 2000, unit: '/s' },
  { id: 'fairness-plain', description: 'library-plain beside a stall / alone', scenario: 'fairness', path: 'library-plain', metric: FAIRNESS_RATIO, comparison: '>=', threshold: 0.8, unit: 'ratio' },
  // What users compare: ridproxy against ssh -R (aes128-gcm through its own sshd) in the same run.
  { id: 'cli-bulk-1-ssh', description: 'cli bulk, 1 flow, vs ssh -R', scenario: 'bulk', path: 'cli', metric: BULK_ONE, ratioTo: 'ssh', comparison: '>=', threshold: 0.6, unit: 'x ssh' },
  { id: 'cli-bulk-8-ssh', description: 'cli bulk, 8 flows, vs ssh -R', scenario: 'bulk', path: 'cli', metric: BULK_EIGHT, ratioTo: 'ssh', comparison: '>=', threshold: 0.6, unit: 'x ssh' },
  { id: 'cli-per-core-1-ssh', description: 'cli relay Gbit/s per core, 1 flow, vs ssh -R', scenario: 'bulk', path: 'cli', metric: PER_CORE_ONE, ratioTo: 'ssh', comparison: '>=', threshold: 0.5, unit: 'x ssh' },
  { id: 'cli-per-core-8-ssh', description: 'cli relay Gbit/s per core, 8 flows, vs ssh -R', scenario: 'bulk', path: 'cli', metric: PER_CORE_EIGHT, ratioTo: 'ssh', comparison: '>=', threshold: 0.5, unit: 'x ssh' },
  { id: 'cli-latency-p50-ssh', description: "cli added p50 latency vs ssh -R's", scenario: 'latency', path: 'cli', metric: P50_ADDED, ratioTo: 'ssh', comparison: '<=', threshold: 1.5, unit: 'x ssh' },
  // Over a long path both the CLI and the library should at least match ssh -R, whose channel window is 2 MiB.
  ...LONGPATH_RTTS_MS.flatMap((rtt) =>
    [1, 8].flatMap((flows) =>
      (['cli', 'library'] as const).map(
        (path): TargetSpec => ({
          id: `longpath-${rtt}ms-${flows}-${path}`,
          description: `${path} bulk over ${rtt} ms RTT, ${flows} flow${flows > 1 ? 's' : ''}, vs ssh -R`,
          scenario: 'longpath',
          path,
          metric: longpathMetric(rtt, flows),
          ratioTo: 'ssh',
          comparison: '>=',
          threshold: 1,
          unit: 'x ssh',
        }),
      ),
    ),
  ),
  // Issue 12: a bulk flow on the same VC adds at most 5 ms to an interactive flow's p99.
  ...(['library', 'cli'] as const).flatMap((path) =>
    BULK_LOADS.map(
      (load): TargetSpec => ({
        id: `interactive-${load}-${path}`,
        description: `${path} ping-pong p99 added beside a bulk ${load} on the same VC`,
        scenario: 'interactive',
        path,
        metric: addedP99Metric(load),
        comparison: '<=',
        threshold: 5,
        unit: 'ms',
      }),
    ),
  ),
  // Issue 13: after an outage of any length every server is registered again within 3 s of the proxy's return.
  ...RECONNECT_OUTAGES_S.full.map(
    (seconds): TargetSpec => ({
      id: `reconnect-${seconds}s`,
      description: `last server back after a ${seconds} s outage`,
      scenario: 'reconnect',
      path: outageLabel(seconds),
      metric: REREG_MAX,
      comparison: '<=',
      threshold: RECONNECT_BOUND_MS,
      unit: 'ms',
    }),
  ),
];

function find(reports: ScenarioReport[], spec: TargetSpec): Row | undefined {
  return reports.find((r) => r.name === spec.scenario)?.rows.find((row) => row.path === spec.path && row.metric === spec.metric);
}

/** PASS/MISS for every target whose scenario ran; N/A (pass null) when its figure is missing. */
export function evaluateTargets(reports: ScenarioReport[]): TargetResult[] {
  return TARGETS.filter((spec) => reports.some((r) => r.name === spec.scenario)).map((spec) => {
    const row = find(reports, spec);
    const value = row === undefined ? undefined : spec.ratioTo ? row.ratios[spec.ratioTo] : row.median;
    const measured = value !== undefined && Number.isFinite(value);
    const detail = !row
      ? 'not measured in this run'
      : !measured
        ? `no ${spec.ratioTo ?? 'value'} figure to compare with`
        : `median of ${row.samples.length} round${row.samples.length === 1 ? '' : 's'}${spec.ratioTo && spec.ratioTo !== 'direct' && row.ratios.direct !== undefined ? `; ${row.ratios.direct.toFixed(2)}x direct` : ''}`;
    return {
      id: spec.id,
      description: spec.description,
      value: measured ? value : null,
      threshold: spec.threshold,
      comparison: spec.comparison,
      unit: spec.unit,
      pass: measured ? (spec.comparison === '>=' ? value >= spec.threshold : value <= spec.threshold) : null,
      detail,
    };
  });
}
