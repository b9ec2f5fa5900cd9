import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { waitFor } from '../helpers.js';
import { readmeBlock } from '../readme.js';
import { freePort, isolatedConfig, killAll, runCli, runToExit } from './cli.js';

/** The port a `proxy start` listens on, from the endpoint it prints. */
async function listeningPort(args: string[], config: string, env: Record<string, string> = {}): Promise<number> {
  const proxy = runCli(['start', ...args], { config, env });
  const endpoint = await proxy.firstLine;
  proxy.child.kill('SIGTERM');
  await proxy.exited;
  return Number(endpoint.split(':')[2]!.split('/')[0]);
}

describe('options from a config file and the environment', () => {
  afterAll(killAll);

  it('takes the command line over RIDPROXY_<OPTION>, that over the [command] table, that over the top level', async () => {
    const config = isolatedConfig();
    const [top, table, fromEnv, fromFlag] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const file = join(config, 'ridproxy.toml');
    writeFileSync(file, `log-level = "warn"\nlisten = "127.0.0.1:${top}"\n`);
    expect(await listeningPort(['--config', file], config)).toBe(top);
    writeFileSync(file, `log-level = "warn"\nlisten = "127.0.0.1:${top}"\n[start]\nlisten = "127.0.0.1:${table}"\n`);
    expect(await listeningPort(['--config', file], config)).toBe(table);
    expect(await listeningPort(['--config', file], config, { RIDPROXY_LISTEN: `127.0.0.1:${fromEnv}` })).toBe(fromEnv);
    expect(await listeningPort(['--config', file, '--listen', `127.0.0.1:${fromFlag}`], config, { RIDPROXY_LISTEN: `127.0.0.1:${fromEnv}` })).toBe(fromFlag);
    // The file can also be named by $RIDPROXY_CONFIG.
    expect(await listeningPort([], config, { RIDPROXY_CONFIG: file })).toBe(table);
  });

  it('applies values the way the flag would: numbers parsed, choices checked, the log level honoured', async () => {
    const config = isolatedConfig();
    const file = join(config, 'ridproxy.toml');
    writeFileSync(file, '[start]\nlisten = "127.0.0.1:0"\nlog-level = "warn"\n');
    const quiet = runCli(['start', '--config', file], { config });
    await quiet.firstLine;
    quiet.child.kill('SIGTERM');
    await quiet.exited;
    // At warn, the "proxy listening" info line is not written.
    expect(quiet.stderr()).not.toMatch(/proxy listening/);
    writeFileSync(file, '[start]\nidle-timeout = -5\n');
    expect(await runToExit(['start', '--config', file], config)).toMatchObject({ code: 1, stderr: expect.stringMatching(/idle-timeout in .*ridproxy\.toml: "-5" is not a whole number/) });
    expect(await runToExit(['start', '--listen', '127.0.0.1:0'], config, { RIDPROXY_LOG_LEVEL: 'loud' })).toMatchObject({ code: 1, stderr: expect.stringMatching(/RIDPROXY_LOG_LEVEL must be one of .*, got loud/) });
  });

  it('lets a config file supply the required options of serve', async () => {
    const config = isolatedConfig();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const file = join(config, 'serve.toml');
    writeFileSync(file, `[serve]\nproxy = "${await proxy.firstLine}"\nforward = "${await freePort()}"\nlog-level = "warn"\n`);
    const serve = runCli(['serve', '--config', file], { config });
    expect(await serve.firstLine).toMatch(/^ridp:\/\/[0-9a-f]{32}@127\.0\.0\.1:\d+\/[0-9a-f]{32}$/);
  });

  it('takes a switch from its variable as 1 or true, and refuses anything else', async () => {
    const config = isolatedConfig();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const bare = (await proxy.firstLine).replace(/^ridp:\/\/([^/]+)\/.*$/, '$1');
    const args = ['serve', '--proxy', bare, '--forward', String(await freePort()), '--log-level', 'warn'];
    // A bare host:port names no proxy key: refused unless --insecure-any-proxy is on.
    expect(await runToExit(args, config)).toMatchObject({ code: 1, stderr: expect.stringContaining('names no routing id') });
    const serve = runCli(args, { config, env: { RIDPROXY_INSECURE_ANY_PROXY: '1' } });
    expect(await serve.firstLine).toMatch(/^ridp:\/\//);
    expect(await runToExit(args, config, { RIDPROXY_INSECURE_ANY_PROXY: 'yes' })).toMatchObject({ code: 1, stderr: expect.stringContaining('RIDPROXY_INSECURE_ANY_PROXY must be true or false') });
  });

  it("the README's example file names only options its commands have", () => {
    const example = parse(readmeBlock('toml', '[start]')) as Record<string, unknown>;
    const program = buildProgram();
    const longs = (name: string): string[] => program.commands.find((c) => c.name() === name)!.options.flatMap((o) => (o.long ? [o.long.slice(2)] : []));
    const all = program.commands.flatMap((c) => longs(c.name()));
    for (const [key, value] of Object.entries(example)) {
      if (typeof value === 'object' && value !== null) for (const inner of Object.keys(value)) expect(longs(key), `[${key}] ${inner}`).toContain(inner);
      else expect(all, key).toContain(key);
    }
    expect(Object.keys(example)).toEqual(expect.arrayContaining(['start', 'serve']));
  });

  it('refuses an unknown key, a key no command has, and a token, naming the file', async () => {
    const config = isolatedConfig();
    const file = join(config, 'bad.toml');
    writeFileSync(file, '[start]\nlisen = "127.0.0.1:0"\n');
    expect(await runToExit(['start', '--config', file], config)).toMatchObject({ code: 1, stderr: expect.stringContaining('proxy start has no option --lisen') });
    writeFileSync(file, 'colour = "blue"\n');
    expect(await runToExit(['start', '--config', file], config)).toMatchObject({ code: 1, stderr: expect.stringContaining('no command has an option --colour') });
    writeFileSync(file, '[start]\ntoken = "s3cret"\n');
    const secret = await runToExit(['start', '--config', file], config);
    expect(secret).toMatchObject({ code: 1, stderr: expect.stringContaining('put --token in --token-file or $RIDPROXY_TOKEN') });
    expect(secret.stderr).not.toContain('s3cret');
    writeFileSync(file, '[start\n');
    expect(await runToExit(['start', '--config', file], config)).toMatchObject({ code: 1, stderr: expect.stringContaining('is not valid TOML') });
    expect(await runToExit(['start', '--config', join(config, 'missing.toml')], config)).toMatchObject({ code: 1, stderr: expect.stringContaining('cannot read the config file') });
  });

  it('reloads the log level from the file on SIGHUP, in start and serve; the command line still wins', async () => {
    const config = isolatedConfig();
    const file = join(config, 'ridproxy.toml');
    const lines = (text: string, msg: string): number => text.split('\n').filter((line) => line.includes(`"msg":"${msg}"`)).length;
    writeFileSync(file, '[start]\nlisten = "127.0.0.1:0"\nlog-level = "warn"\n');
    const proxy = runCli(['start', '--config', file], { config });
    const endpoint = await proxy.firstLine;
    const serveFile = join(config, 'serve.toml');
    writeFileSync(serveFile, `[serve]\nproxy = "${endpoint}"\nlog-level = "warn"\n`);
    const first = runCli(['serve', '--config', serveFile, '--forward', String(await freePort())], { config });
    await first.firstLine;
    // At warn, the proxy says nothing of the registration.
    expect(lines(proxy.stderr(), 'server registered')).toBe(0);

    writeFileSync(file, '[start]\nlisten = "127.0.0.1:0"\nlog-level = "info"\n');
    proxy.child.kill('SIGHUP');
    await waitFor(() => proxy.stderr().includes('SIGHUP: log level warn -> info'), 'the proxy to take the new level');
    const second = runCli(['serve', '--config', serveFile, '--forward', String(await freePort())], { config });
    await second.firstLine;
    await waitFor(() => lines(proxy.stderr(), 'server registered') === 1, 'the registration to be logged at info');

    // Back to warn: the change is said at the old level, then nothing more at info.
    writeFileSync(file, '[start]\nlisten = "127.0.0.1:0"\n log-level = "warn"\n');
    proxy.child.kill('SIGHUP');
    await waitFor(() => proxy.stderr().includes('SIGHUP: log level info -> warn'), 'the proxy to go quiet again');
    const third = runCli(['serve', '--config', serveFile, '--forward', String(await freePort())], { config });
    await third.firstLine;

    // serve too: SIGHUP does not stop it, and its level follows the file.
    writeFileSync(serveFile, `[serve]\nproxy = "${endpoint}"\nlog-level = "debug"\n`);
    first.child.kill('SIGHUP');
    await waitFor(() => first.stderr().includes('SIGHUP: log level warn -> debug'), 'serve to take the new level');
    expect(first.child.exitCode).toBeNull();

    // A level given on the command line is not the file's to change.
    const pinned = runCli(['start', '--config', file, '--log-level', 'info'], { config });
    await pinned.firstLine;
    writeFileSync(file, '[start]\nlisten = "127.0.0.1:0"\nlog-level = "debug"\n');
    pinned.child.kill('SIGHUP');
    await waitFor(() => pinned.stderr().includes('reloaded the allow-list and tokens'), 'the pinned proxy to reload');
    pinned.child.kill('SIGTERM');
    await pinned.exited;
    expect(pinned.stderr()).not.toContain('log level');
    expect(lines(proxy.stderr(), 'server registered')).toBe(1);
  });
});
