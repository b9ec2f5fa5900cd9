import { spawn, spawnSync } from 'node:child_process';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.js';
import { ROOT, readme } from '../readme.js';
import { freePort, isolatedConfig, killAll } from './cli.js';

/** The README's example routing ids and ports, which the test replaces by real ones. */
const EXAMPLE = {
  proxyRid: '9a0c3b5e0c5b4f0e8f7f7c2d1e7a6b55',
  serverRid: '4f1c0e2b6f7d4a3c9e8d7c6b5a493827',
  proxyPort: '8100',
  servicePort: '3000',
  localPort: '9000',
};

/** Every `$ command` line of the console blocks in the README section headed `heading`, in order. */
function walkthroughCommands(heading = '## Five-minute walkthrough'): string[] {
  const text = readme();
  const start = text.indexOf(heading);
  if (start < 0) throw new Error(`README.md has no section ${heading}`);
  const section = text.slice(start, text.indexOf('\n## ', start + 1));
  return [...section.matchAll(/^```console\n([\s\S]*?)^```$/gm)].flatMap((block) =>
    block[1]
      .split('\n')
      .filter((line) => line.startsWith('$ '))
      .map((line) => line.slice(2)),
  );
}

interface Shell {
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  firstLine: Promise<string>;
  exited: Promise<number | null>;
}

const children: Array<ReturnType<typeof spawn>> = [];
const servers: Server[] = [];

afterAll(async () => {
  // Each line runs in a process group of its own, so what bash started in the background goes too.
  for (const child of children) {
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  await killAll();
});

/** Runs one walkthrough line with bash, as a user would paste it, `npx proxy` being the launcher npx runs. */
function shell(line: string, cwd: string, config: string): Shell {
  const command = line.replaceAll('npx proxy ', `${ROOT}bin/proxy.js `);
  const child = spawn('bash', ['-c', command], {
    cwd,
    env: { ...process.env, XDG_CONFIG_HOME: config, NO_COLOR: '1' },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const firstLine = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('\n')) resolve(stdout.slice(0, stdout.indexOf('\n')));
    });
    void exited.then((code) => reject(new Error(`${line} exited with ${code} before printing a line: ${stderr}`)));
  });
  firstLine.catch(() => undefined);
  return { stdout: () => stdout, stderr: () => stderr, firstLine, exited };
}

/** A stand-in for sshd: sends an SSH banner, records the client's, and hangs up. */
async function fakeSshd(): Promise<{ port: number; received: () => string }> {
  let received = '';
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      if (received.includes('\r\n')) socket.end();
    });
    socket.write('SSH-2.0-ridproxy_walkthrough_test\r\n');
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, received: () => received };
}

describe('the README walkthrough', () => {
  it('runs every command as written (ports and routing ids replaced by the real ones) and gets what the README says', async () => {
    const missing = ['curl', 'openssl', 'ssh', 'python3'].filter((tool) => spawnSync('which', [tool]).status !== 0);
    expect(missing, `the walkthrough uses ${missing.join(', ')}; .ci/run installs them`).toEqual([]);
    const commands = walkthroughCommands();
    const cwd = isolatedConfig();
    const config = isolatedConfig();
    const [proxyPort, tokenProxyPort, servicePort, localPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const real = { proxyEndpoint: '', serverEndpoint: '' };
    const substitute = (line: string): string =>
      line
        .replaceAll(`ridp://${EXAMPLE.proxyRid}@127.0.0.1:${EXAMPLE.proxyPort}/${EXAMPLE.serverRid}`, real.serverEndpoint)
        .replaceAll(`ridp://127.0.0.1:${EXAMPLE.proxyPort}/${EXAMPLE.proxyRid}`, real.proxyEndpoint)
        .replaceAll(`127.0.0.1:${EXAMPLE.localPort}`, `127.0.0.1:${localPort}`)
        .replace(/--local 9000\b/, `--local ${localPort}`)
        .replace(/\b3000\b/, String(servicePort));

    // Each line the walkthrough shows, and what it must do. A new line in the README fails here until it is tested.
    const handlers: Array<[RegExp, (line: string) => Promise<void>]> = [
      [
        /^npx proxy start$/,
        async (line) => {
          // The default 127.0.0.1:8100, moved to a free port so tests can run side by side.
          const proxy = shell(`${line} --listen 127.0.0.1:${proxyPort}`, cwd, config);
          real.proxyEndpoint = await proxy.firstLine;
          expect(real.proxyEndpoint).toMatch(new RegExp(`^ridp://127\\.0\\.0\\.1:${proxyPort}/[0-9a-f]{32}$`));
        },
      ],
      [
        /^\(umask 077; openssl rand -hex 32 > registration\.token\)$/,
        async (line) => {
          expect(await shell(line, cwd, config).exited).toBe(0);
        },
      ],
      [
        /^npx proxy start --token-file registration\.token$/,
        async (line) => {
          const proxy = shell(`${line} --listen 127.0.0.1:${tokenProxyPort}`, cwd, config);
          expect(await proxy.firstLine).toMatch(/^ridp:\/\//);
          await waitFor(() => proxy.stderr().includes('"tokenSource":"file"'), 'the proxy to say where its token came from');
        },
      ],
      [
        /^python3 -m http\.server 3000 --bind 127\.0\.0\.1 &$/,
        async (line) => {
          // Bash runs it in the background and waits for it; the test waits until it answers.
          shell(`${substitute(line)} wait`, cwd, config);
          await waitFor(() => spawnSync('curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${servicePort}/`]).status === 0, 'the HTTP server', 20_000);
        },
      ],
      [
        /^npx proxy serve --proxy \S+ --forward 127\.0\.0\.1:3000$/,
        async (line) => {
          const serve = shell(substitute(line), cwd, config);
          real.serverEndpoint = await serve.firstLine;
          const proxyRid = real.proxyEndpoint.slice(-32);
          expect(real.serverEndpoint).toMatch(new RegExp(`^ridp://${proxyRid}@127\\.0\\.0\\.1:${proxyPort}/[0-9a-f]{32}$`));
        },
      ],
      [
        /^npx proxy connect \S+ --local 9000$/,
        async (line) => {
          expect(await shell(substitute(line), cwd, config).firstLine).toBe(`127.0.0.1:${localPort}`);
        },
      ],
      [
        /^curl http:\/\/127\.0\.0\.1:9000\/$/,
        async (line) => {
          const curl = shell(substitute(line), cwd, config);
          expect(await curl.exited).toBe(0);
          // python's http.server lists the directory it serves.
          expect(curl.stdout()).toContain('registration.token');
        },
      ],
      [
        /^ssh -o ProxyCommand='npx proxy connect \S+ --stdio' user@anything$/,
        async (line) => {
          // The same command, through a serve of a stand-in sshd; ssh must not prompt or remember the host.
          const sshd = await fakeSshd();
          const serve = shell(`npx proxy serve --proxy ${real.proxyEndpoint} --forward 127.0.0.1:${sshd.port}`, cwd, config);
          const endpoint = await serve.firstLine;
          const ssh = shell(
            line
              .replace(/ridp:\/\/\S+ --stdio/, `${endpoint} --stdio`)
              .replace('ssh ', 'ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 '),
            cwd,
            config,
          );
          // ssh got the banner through the tunnel, answered with its own, and saw the hang-up.
          expect(await ssh.exited).toBe(255);
          expect(sshd.received()).toMatch(/^SSH-2\.0-OpenSSH/);
          expect(ssh.stderr()).toMatch(/Connection closed/);
        },
      ],
      [
        /^npx proxy status \S+$/,
        async (line) => {
          const status = shell(substitute(line), cwd, config);
          expect(await status.exited).toBe(0);
          expect(status.stdout()).toMatch(new RegExp(`^proxy +${real.proxyEndpoint.replaceAll('.', '\\.')}\\n`));
          expect(status.stdout()).toMatch(/^ROUTING ID +FROM +VCS +SENT +RECEIVED +CONNECTED$/m);
          expect(status.stdout()).toContain(real.serverEndpoint.slice(-32));
        },
      ],
    ];

    expect(commands.length).toBeGreaterThanOrEqual(handlers.length);
    for (const line of commands) {
      const handler = handlers.find(([pattern]) => pattern.test(line));
      expect(handler, `no test for the walkthrough line: $ ${line}`).toBeDefined();
      await handler![1](line);
    }
  }, 90_000);

  it('the web walkthrough: a proxy with a domain, serve --name, curl by name (DNS replaced by --connect-to)', async () => {
    const commands = walkthroughCommands('## Expose to the web');
    const cwd = isolatedConfig();
    const config = isolatedConfig();
    const [proxyPort, httpPort, servicePort] = await Promise.all([freePort(), freePort(), freePort()]);
    const service = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nhello from behind NAT\n'));
    });
    servers.push(service);
    await new Promise<void>((resolve) => service.listen(servicePort, '127.0.0.1', resolve));
    let proxyEndpoint = '';
    const handlers: Array<[RegExp, (line: string) => Promise<void>]> = [
      [
        /^npx proxy start --listen 0\.0\.0\.0:8100 --http 0\.0\.0\.0:8080 --domain tunnel\.example\.com$/,
        async (line) => {
          const proxy = shell(line.replace('0.0.0.0:8100', `127.0.0.1:${proxyPort}`).replace('0.0.0.0:8080', `127.0.0.1:${httpPort}`), cwd, config);
          proxyEndpoint = await proxy.firstLine;
        },
      ],
      [
        /^npx proxy serve --proxy \S+ --forward 3000 --name myapp$/,
        async (line) => {
          const serve = shell(line.replace(/--proxy \S+/, `--proxy ${proxyEndpoint}`).replace('--forward 3000', `--forward ${servicePort}`), cwd, config);
          await serve.firstLine;
          await waitFor(() => serve.stdout().trim().split('\n').length === 3, 'the two URL lines');
          const [, named, byRid] = serve.stdout().trim().split('\n');
          expect(named).toBe(`http://myapp.tunnel.example.com:${httpPort}/`);
          expect(byRid).toMatch(new RegExp(`^http://[a-z2-7]{26}\\.tunnel\\.example\\.com:${httpPort}/$`));
        },
      ],
      [
        /^curl http:\/\/myapp\.tunnel\.example\.com:8080\/$/,
        async (line) => {
          const curl = shell(line.replace('curl ', `curl -s --connect-to ::127.0.0.1:${httpPort} `).replace(':8080/', `:${httpPort}/`), cwd, config);
          expect(await curl.exited).toBe(0);
          expect(curl.stdout()).toBe('hello from behind NAT\n');
        },
      ],
    ];
    for (const line of commands) {
      const handler = handlers.find(([pattern]) => pattern.test(line));
      expect(handler, `no test for the web walkthrough line: $ ${line}`).toBeDefined();
      await handler![1](line);
    }
  }, 60_000);
});
