import { readFileSync } from 'node:fs';
import { Command, CommanderError, type Option } from 'commander';
import { useConfigSources } from './config.js';
import { describe } from './describe.js';
import { drainLogs } from './logger.js';
import { registerConnect } from './commands/connect.js';
import { registerKeygen } from './commands/keygen.js';
import { registerNames } from './commands/names.js';
import { registerServe } from './commands/serve.js';
import { registerStart } from './commands/start.js';
import { registerStatus } from './commands/status.js';

export function buildProgram(): Command {
  const program = new Command('proxy')
    .description('Export services from behind NAT through a relay, addressed by routing ID instead of host and port.')
    .version(packageVersion(), '-V, --version', 'print the version of ridproxy and exit')
    .helpOption('-h, --help', 'show help for the command')
    // Subcommands copy these settings when they are created, so they must come first: set after
    // registerStart() and the rest, a subcommand's usage error would call process.exit() itself.
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text) })
    .showHelpAfterError('(run with --help for usage)')
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      `
Example, in three terminals:
  $ npx proxy start                                        # prints the proxy endpoint
  $ npx proxy serve --proxy <proxy-endpoint> --forward 127.0.0.1:3000
  $ npx proxy connect <endpoint-printed-by-serve> --local 9000
  $ curl http://127.0.0.1:9000/`,
    );
  registerStart(program);
  registerKeygen(program);
  registerServe(program);
  registerConnect(program);
  registerStatus(program);
  registerNames(program);
  // Before the required-option check: a config file or variable may be what supplies one.
  useConfigSources(program);
  for (const command of program.commands) checkUnknownOptionsFirst(command);
  return program;
}

/**
 * commander checks required options before unknown ones, so `serve --foward x` said "required
 * option '--forward' not specified" rather than suggesting --forward. This moves the required
 * check after it: to the preAction hook, which runs once unknown options have been reported.
 */
function checkUnknownOptionsFirst(command: Command): void {
  const required: Option[] = command.options.filter((option) => option.mandatory);
  if (required.length === 0) return;
  for (const option of required) option.mandatory = false;
  command.hook('preAction', () => {
    for (const option of required) {
      if (command.getOptionValue(option.attributeName()) === undefined) {
        command.error(`error: required option '${option.flags}' not specified`, { code: 'commander.missingMandatoryOptionValue' });
      }
    }
  });
}

/** The version in ridproxy's package.json, found from this file whether it runs from src/ or dist/src/. */
function packageVersion(): string {
  for (const relative of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'ridproxy' && pkg.version) return pkg.version;
    } catch {
      // not at this level
    }
  }
  return 'unknown';
}

/** Runs the CLI; every failure ends as one line on stderr and a non-zero exit, never a stack trace. */
export async function main(argv: string[]): Promise<void> {
  // A reader that stops early (`proxy serve --help | head`) closes the pipe under the help text:
  // the end of the output, not a crash. Commands that hand stdout to a stream of their own
  // (connect --stdio) listen for its errors themselves.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (process.stdout.listenerCount('error') > 1) return;
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    // After the log lines that led to it, some of which may still wait to be written.
    drainLogs();
    process.stderr.write(`proxy: ${describe(err)}\n`);
    process.exitCode = 1;
  }
}
