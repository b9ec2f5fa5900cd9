import { Option, type Command } from 'commander';
import { DEFAULT_MAX_FLOWS_PER_VC } from '../manager/options.js';
import { reloadedOption } from './config.js';
import { describe } from './describe.js';
import { LOG_LEVELS, type Logger } from './logger.js';
import { positiveInteger } from './parse.js';

/** Options every long-running command shares. */
export interface CommonOptions {
  logLevel: string;
  pretty?: boolean;
}

/** What the tunnelling commands (connect, serve) share on top of CommonOptions. */
export interface TunnelOptions extends CommonOptions {
  maxFlows: number;
  metrics?: string;
}

/** The tunnelling commands carry each TCP connection as one flow of one VC. */
export function addTunnelOptions(command: Command, health: string): Command {
  return addCommonOptions(command)
    .addOption(
      new Option('--max-flows <n>', 'flows one VC may carry at once, both ways together: how many TCP connections one tunnel takes at once')
        .argParser(positiveInteger)
        .default(DEFAULT_MAX_FLOWS_PER_VC),
    )
    .option(
      '--metrics <[host:]port>',
      `serve Prometheus metrics (connections carried and how they ended, bytes each way) at http://<host:port>/metrics, and /healthz: 200 "ok" ${health}; host defaults to 127.0.0.1`,
    );
}

export function addCommonOptions(command: Command): Command {
  return command
    .addOption(new Option('--log-level <level>', 'log verbosity').choices(LOG_LEVELS).default('info'))
    .option('--pretty', 'human-readable logs (the default when stderr is a terminal)');
}

/**
 * On SIGHUP: the log level as the config file now says (the command line and the environment
 * still win over it). The change is logged at the more verbose of the two levels; a file that
 * cannot be read keeps the level in force.
 */
export function reloadLogLevel(command: Command, log: Logger): void {
  let next: ReturnType<typeof reloadedOption>;
  try {
    next = reloadedOption(command, 'logLevel');
  } catch (err) {
    log.error({ signal: 'SIGHUP', reason: describe(err) }, `SIGHUP: cannot read the config file; the log level stays ${log.level}`);
    return;
  }
  const previous = log.level;
  const level = String(next.value);
  if (level === previous) return;
  const report = (): void => log.info({ signal: 'SIGHUP', previous, logLevel: level, source: next.source }, `SIGHUP: log level ${previous} -> ${level}`);
  const louder = log.levels.values[level] < log.levels.values[previous];
  if (!louder) report();
  log.level = level;
  if (louder) report();
}
