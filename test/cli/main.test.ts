import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';

describe('buildProgram', () => {
  it('hands a usage error in any subcommand back to main as a CommanderError, instead of exiting the process itself', async () => {
    // exitOverride() set after the subcommands exist would not reach them: commander copies it
    // into each subcommand when it is created, and a subcommand without it calls process.exit().
    for (const [args, code] of [
      [['serve', '--foward', '3000'], 'commander.unknownOption'],
      [['serve', '--proxy', '127.0.0.1:1'], 'commander.missingMandatoryOptionValue'],
      [['start', '--drain-timeout', 'abc'], 'commander.invalidArgument'],
      [['connect'], 'commander.missingArgument'],
      [['statuz'], 'commander.unknownCommand'],
    ] as const) {
      const err = await buildProgramWithQuietErrors()
        .parseAsync([...args], { from: 'user' })
        .then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(CommanderError);
      expect(err).toMatchObject({ code, exitCode: 1 });
    }
  });

  it('refuses 0 for a limit that 0 would make refuse everything, and accepts it where the option gives 0 a meaning', async () => {
    // --max-flows 0 would carry no connection at all; --handshake-timeout 0 would time out every handshake.
    const parse = (args: string[]): Promise<unknown> =>
      buildProgramWithQuietErrors()
        .parseAsync(args, { from: 'user' })
        .then(() => undefined, (e: unknown) => e);
    for (const flag of ['--max-connections', '--max-connections-per-address', '--max-handshakes', '--max-registrations', '--max-vcs-per-connection', '--buffer-budget', '--handshake-timeout', '--max-frame-size']) {
      const err = await parse(['start', flag, '0']);
      expect(err, flag).toBeInstanceOf(CommanderError);
      expect(err, flag).toMatchObject({ code: 'commander.invalidArgument', message: expect.stringContaining(`${flag} <`) });
      expect((err as Error).message, flag).toContain('at least 1');
    }
    for (const args of [['serve', '--max-flows', '0'], ['connect', 'ridp://127.0.0.1:1/00', '--max-flows', '0']]) {
      expect(await parse(args), args.join(' ')).toMatchObject({ code: 'commander.invalidArgument' });
    }
    // 0 means "forever", "none wait" and "at once" for these; each parses (and fails later, on the missing key or listen).
    const start = buildProgram().commands.find((command) => command.name() === 'start')!;
    for (const flag of ['--idle-timeout', '--max-queued-handshakes', '--drain-timeout']) {
      const option = start.options.find((o) => o.long === flag)!;
      expect(option.parseArg!('0', undefined), flag).toBe(0);
    }
  });

  it('explains every option of every command in --help', () => {
    const program = buildProgram();
    const undocumented = [program, ...program.commands, ...program.commands.flatMap((c) => c.commands)].flatMap((command) =>
      command.options.filter((option) => option.description.trim().length < 10).map((option) => `${command.name()} ${option.flags}`),
    );
    expect(undocumented).toEqual([]);
    expect(program.commands.map((c) => c.name()).sort()).toEqual(['connect', 'keygen', 'names', 'serve', 'start', 'status']);
  });
});

/** A program whose usage errors are not printed: this test reads them from the thrown error. */
function buildProgramWithQuietErrors() {
  const program = buildProgram();
  for (const command of [program, ...program.commands]) command.configureOutput({ writeErr: () => undefined, outputError: () => undefined });
  return program;
}
