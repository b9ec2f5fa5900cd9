import { Option, type Command } from 'commander';
import { DEFAULT_MAX_FLOWS_PER_VC } from '../manager/options.js';
import { LOG_LEVELS } from './logger.js';
import { positiveInteger } from './parse.js';

/** Options every long-running command shares. */
export interface CommonOptions {
  logLevel: string;
  pretty?: boolean;
}

/** What the tunnelling commands (connect, serve) share on top of CommonOptions. */
export interface TunnelOptions extends CommonOptions {
  maxFlows: number;
}

/** The tunnelling commands carry each TCP connection as one flow of one VC. */
export function addTunnelOptions(command: Command): Command {
  return addCommonOptions(command).addOption(
    new Option('--max-flows <n>', 'flows one VC may carry at once, both ways together: how many TCP connections one tunnel takes at once')
      .argParser(positiveInteger)
      .default(DEFAULT_MAX_FLOWS_PER_VC),
  );
}

export function addCommonOptions(command: Command): Command {
  return command
    .addOption(new Option('--log-level <level>', 'log verbosity').choices(LOG_LEVELS).default('info'))
    .option('--pretty', 'human-readable logs (the default when stderr is a terminal)');
}
