/**
 * `npm run bench [-- --quick] [--only ...]`: runs the scenarios, each comparing ridproxy with the
 * baselines in the same invocation, prints tables and targets, and writes bench/results/<time>.json.
 */
import { parseArgs, USAGE, UsageError, type Options, type ScenarioName } from './harness/args.js';
import { killAll } from './harness/children.js';
import { loadAverage, machineInfo, writeReport, type BenchReport, type ScenarioReport } from './harness/results.js';
import { renderScenario, renderTargets } from './harness/table.js';
import { evaluateTargets } from './harness/targets.js';
import { ridproxyProblem } from './lib/ridproxy.js';
import { cliProblem } from './paths/cli.js';
import { sshProblem } from './paths/ssh.js';
import { PATH_LABELS } from './paths/types.js';
import type { Context } from './paths/topology.js';
import { activeScenario } from './scenarios/active.js';
import { bulkScenario } from './scenarios/bulk.js';
import { clusterScenario } from './scenarios/cluster.js';
import { fairnessScenario } from './scenarios/fairness.js';
import { interactiveScenario } from './scenarios/interactive.js';
import { latencyScenario } from './scenarios/latency.js';
import { longpathScenario } from './scenarios/longpath.js';
import { memoryScenario } from './scenarios/memory.js';
import { reconnectScenario } from './scenarios/reconnect.js';
import { setupScenario } from './scenarios/setup.js';

const RUNNERS: Record<ScenarioName, (ctx: Context) => Promise<ScenarioReport>> = {
  bulk: bulkScenario,
  latency: latencyScenario,
  setup: setupScenario,
  memory: memoryScenario,
  fairness: fairnessScenario,
  interactive: interactiveScenario,
  active: activeScenario,
  longpath: longpathScenario,
  cluster: clusterScenario,
  reconnect: reconnectScenario,
};

async function main(options: Options): Promise<number> {
  const startedAt = new Date().toISOString();
  const loadAtStart = loadAverage();
  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const problems: Context['problems'] = {};
  if (options.paths.includes('library') || options.paths.includes('library-plain')) {
    const problem = await ridproxyProblem();
    problems.library = problem;
    problems['library-plain'] = problem;
  }
  if (options.paths.includes('cli')) problems.cli = cliProblem();
  if (options.paths.includes('ssh')) problems.ssh = sshProblem();
  const ctx: Context = { options, problems, log };

  process.stdout.write(`ridproxy bench${options.quick ? ' (quick)' : ''}: ${options.rounds} rounds; scenarios ${options.scenarios.join(', ')}; load average ${loadAtStart.join(' ')}\n`);
  for (const path of options.paths) {
    process.stdout.write(`  ${path.padEnd(13)} ${PATH_LABELS[path]}${problems[path] ? `  [SKIPPED: ${problems[path]}]` : ''}\n`);
  }
  const reports: ScenarioReport[] = [];
  let failed = false;
  for (const name of options.scenarios) {
    log(`\n-- ${name} --`);
    const started = Date.now();
    const loadStart = loadAverage();
    try {
      const report = await RUNNERS[name](ctx);
      report.loadAvg = { start: loadStart, end: loadAverage() };
      reports.push(report);
      process.stdout.write(`\n${renderScenario(report)}\n`);
    } catch (err) {
      failed = true;
      process.stdout.write(`\n== ${name}: FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    } finally {
      // Whatever a scenario left running must not load the machine during the next one.
      killAll();
    }
    log(`-- ${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  const targets = evaluateTargets(reports);
  if (targets.length > 0) process.stdout.write(`\n${renderTargets(targets)}\n`);
  const loadAtEnd = loadAverage();
  process.stdout.write(`\nload average (1, 5, 15 min): ${loadAtStart.join(' ')} at start, ${loadAtEnd.join(' ')} at end (${machineInfo().cpus} cores)\n`);
  const report: BenchReport = {
    startedAt,
    finishedAt: new Date().toISOString(),
    options,
    machine: machineInfo(),
    loadAvg: { start: loadAtStart, end: loadAtEnd },
    scenarios: reports,
    targets,
  };
  if (!options.noWrite) process.stdout.write(`\nresults: ${await writeReport(report)}\n`);
  return failed ? 1 : 0;
}

let options: Options;
try {
  options = parseArgs(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`${err.message}\n${USAGE}\n`);
  process.exit(2);
}
main(options).then(
  (code) => {
    killAll();
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
