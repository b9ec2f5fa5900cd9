import { Option, type Command } from 'commander';
import { LOG_LEVELS } from './logger.js';

/** Options every long-running command shares. */
export interface CommonOptions {
  logLevel: string;
  pretty?: boolean;
}

export function addCommonOptions(command: Command): Command {
  return command
    .addOption(new Option('--log-level <level>', 'log verbosity').choices(LOG_LEVELS).default('info'))
    .option('--pretty', 'human-readable logs (the default when stderr is a terminal)');
}
