import { readFileSync } from 'node:fs';
import { type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { isolatedConfig, killAll, runToExit } from './cli.js';

const servers: Server[] = [];

afterEach(async () => {
  await killAll();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The lines a person reads on stderr: JSON log records set aside. */
function humanLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('{'));
}

describe('command line', () => {
  it('suggests the option meant for a mistyped one, rather than calling a required option missing', async () => {
    const config = isolatedConfig();
    const typo = await runToExit(['serve', '--proxy', '127.0.0.1:1', '--foward', '3000'], config);
    expect(typo.code).toBe(1);
    expect(humanLines(typo.stderr)).toEqual(["error: unknown option '--foward'", '(Did you mean --forward?)', '(run with --help for usage)']);
    // A required option really missing is still reported as such.
    const missing = await runToExit(['serve', '--proxy', '127.0.0.1:1'], config);
    expect(missing.code).toBe(1);
    expect(humanLines(missing.stderr)[0]).toBe("error: required option '--forward <[host:]port>' not specified");
    const command = await runToExit(['statuz'], config);
    expect(humanLines(command.stderr).slice(0, 2)).toEqual(["error: unknown command 'statuz'", '(Did you mean status?)']);
  });

  it('--version and -V print the package version', async () => {
    const config = isolatedConfig();
    for (const flag of ['--version', '-V']) {
      const result = await runToExit([flag], config);
      expect(result).toMatchObject({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
    }
  });
});

