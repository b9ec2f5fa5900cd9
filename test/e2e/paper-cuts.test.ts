import { chmodSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { isolatedConfig, killAll, runCli, runToExit } from './cli.js';

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

describe('identity files', () => {
  it('refuses a key file that group or others may access, as ssh does, on serve, connect and start', async () => {
    const config = isolatedConfig();
    const file = join(config, 'key.pem');
    expect((await runToExit(['keygen', '--out', file], config)).code).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    chmodSync(file, 0o644);
    const message = `proxy: Permissions 0644 for '${file}' are too open: a private key must not be accessible by group or others, so this one is refused; chmod 600 '${file}'`;
    for (const args of [
      ['serve', '--proxy', '127.0.0.1:1', '--insecure-any-proxy', '--forward', '2', '--identity', file],
      ['connect', `ridp://127.0.0.1:1/${'0'.repeat(31)}1`, '--stdio', '--identity', file],
      ['start', '--listen', '127.0.0.1:0', '--identity', file],
    ]) {
      const result = await runToExit(args, config);
      expect(result.code).toBe(1);
      expect(humanLines(result.stderr)).toEqual([message]);
    }
  });

  it('writes the identities it creates with mode 0600, in a directory of mode 0700', async () => {
    const config = isolatedConfig();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const serve = runCli(['serve', '--proxy', await proxy.firstLine, '--forward', '3000'], { config });
    await serve.firstLine;
    for (const name of ['proxy-identity.pem', 'serve-127.0.0.1-3000.pem']) {
      const file = join(config, 'ridproxy', name);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(dirname(file)).mode & 0o777).toBe(0o700);
    }
  });
});

