import { appendFileSync, chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createServer, type AddressInfo, type Server } from 'node:net';
import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { delay, waitFor } from '../helpers.js';
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

async function echoService(): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** Resolves with the next `length` bytes the stream delivers, as text. */
function nextBytes(stream: Readable, length: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      if (text.length >= length) {
        stream.off('data', onData);
        resolve(text);
      }
    };
    stream.on('data', onData);
  });
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

  it('--help into a pipe closed early (| head) ends quietly with status 0', async () => {
    const config = isolatedConfig();
    for (const args of [['--help'], ['serve', '--help'], ['start', '--help']]) {
      const cli = runCli(args, { config });
      cli.child.stdout!.destroy();
      const { code } = await cli.exited;
      expect({ args, code, stderr: cli.stderr() }).toEqual({ args, code: 0, stderr: '' });
    }
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

describe('flags the README names', () => {
  it('serve --proxy host:port registers, with --insecure-any-proxy, and prints an endpoint that pins the proxy it found', async () => {
    const config = isolatedConfig();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const proxyEndpoint = await proxy.firstLine;
    const { hostname: host, port } = new URL(proxyEndpoint);
    const proxyRid = proxyEndpoint.split('/').pop()!;
    const echoPort = await echoService();
    const serve = runCli(['serve', '--proxy', `${host}:${port}`, '--insecure-any-proxy', '--forward', String(echoPort)], { config });
    expect(await serve.firstLine).toMatch(new RegExp(`^ridp://${proxyRid}@127\\.0\\.0\\.1:${port}/[0-9a-f]{32}$`));
  });

  it('connect --identity dials as that routing id every run; without it, as a new one each run', async () => {
    const config = isolatedConfig();
    const key = join(config, 'client.pem');
    const rid = (await runToExit(['keygen', '--out', key], config)).stdout.trim();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const echoPort = await echoService();
    const serve = runCli(['serve', '--proxy', await proxy.firstLine, '--forward', String(echoPort), '--log-level', 'debug'], { config });
    const endpoint = await serve.firstLine;
    for (const identity of [['--identity', key], ['--identity', key], [], []]) {
      const cli = runCli(['connect', endpoint, '--stdio', ...identity], { config });
      const echoed = nextBytes(cli.child.stdout!, 2);
      cli.child.stdin!.end('hi');
      expect(await echoed).toBe('hi');
      await cli.exited;
    }
    await waitFor(() => (serve.stderr().match(/flow connected to the local service/g) ?? []).length === 4, 'serve to log four flows');
    const peers = serve
      .stderr()
      .split('\n')
      .filter((line) => line.includes('flow connected to the local service'))
      .map((line) => (JSON.parse(line) as { peer: string }).peer.split('/').pop());
    expect(peers.slice(0, 2)).toEqual([rid, rid]);
    expect(new Set(peers).size).toBe(3);
  });
});

describe('SIGHUP', () => {
  it('reloads the allow-list: a routing id listed afterwards may register, and an open VC carries on', async () => {
    const config = isolatedConfig();
    const allow = join(config, 'allowed');
    const keys = await Promise.all(
      ['first.pem', 'second.pem'].map(async (name) => {
        const file = join(config, name);
        const result = await runToExit(['keygen', '--out', file], config);
        return { file, rid: result.stdout.trim() };
      }),
    );
    writeFileSync(allow, `${keys[0].rid}\n`);
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--allow-file', allow], { config });
    const proxyEndpoint = await proxy.firstLine;
    const echoPort = await echoService();
    const first = runCli(['serve', '--proxy', proxyEndpoint, '--forward', String(echoPort), '--identity', keys[0].file], { config });
    const tunnel = runCli(['connect', await first.firstLine, '--stdio'], { config });
    const echoed = nextBytes(tunnel.child.stdout!, 6);
    tunnel.child.stdin!.write('before');
    expect(await echoed).toBe('before');

    const refused = await runToExit(['serve', '--proxy', proxyEndpoint, '--forward', String(echoPort), '--identity', keys[1].file], config);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`routing id ${keys[1].rid} is not on the allow-list`);

    appendFileSync(allow, `${keys[1].rid}  # added while running\n`);
    proxy.child.kill('SIGHUP');
    await waitFor(() => proxy.stderr().includes('reloaded the allow-list and tokens'), 'the proxy to reload');
    const reloaded = JSON.parse(proxy.stderr().split('\n').find((line) => line.includes('reloaded the allow-list'))!) as Record<string, unknown>;
    expect(reloaded).toMatchObject({ signal: 'SIGHUP', allowList: 2 });
    const second = runCli(['serve', '--proxy', proxyEndpoint, '--forward', String(echoPort), '--identity', keys[1].file], { config });
    expect(await second.firstLine).toMatch(new RegExp(`/${keys[1].rid}$`));

    // The VC opened before the reload still works, on the same connect process.
    const after = nextBytes(tunnel.child.stdout!, 5);
    tunnel.child.stdin!.write('after');
    expect(await after).toBe('after');

    // A reload that cannot read its file keeps what was in force, and the proxy keeps running.
    appendFileSync(allow, 'not a routing id\n');
    proxy.child.kill('SIGHUP');
    await waitFor(() => proxy.stderr().includes('reload failed'), 'the proxy to report the bad file');
    const failed = JSON.parse(proxy.stderr().split('\n').find((line) => line.includes('reload failed'))!) as { level: number; reason: string };
    expect(failed.level).toBe(50);
    expect(failed.reason).toContain('line 3: invalid routing id "not a routing id"');
    await delay(200);
    expect(proxy.child.exitCode).toBeNull();
    const again = nextBytes(tunnel.child.stdout!, 5);
    tunnel.child.stdin!.write('still');
    expect(await again).toBe('still');
    expect([first.child.exitCode, second.child.exitCode]).toEqual([null, null]);
  });
});
