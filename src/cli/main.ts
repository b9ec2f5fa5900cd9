import { Command, CommanderError } from 'commander';
import { describe } from './describe.js';
import { registerConnect } from './commands/connect.js';
import { registerKeygen } from './commands/keygen.js';
import { registerServe } from './commands/serve.js';
import { registerStart } from './commands/start.js';
import { registerStatus } from './commands/status.js';

export function buildProgram(): Command {
  const program = new Command('proxy')
    .description('Export services from behind NAT through a relay, addressed by routing ID instead of host and port.')
    .showHelpAfterError('(run with --help for usage)')
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
  return program;
}

/** Runs the CLI; every failure ends as one line on stderr and a non-zero exit, never a stack trace. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  program.configureOutput({ outputError: (text, write) => write(text) });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`proxy: ${describe(err)}\n`);
    process.exitCode = 1;
  }
}
