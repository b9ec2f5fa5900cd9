import { createServer, type Server, connect, type AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { Endpoint } from '../../src/id/endpoint.js';
import { waitFor } from '../helpers.js';
import { isolatedConfig, killAll, runCli, runToExit } from './cli.js';

const servers: Server[] = [];

afterAll(async () => {
  await killAll();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

async function echoService(): Promise<number> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** One round trip on a new local connection through `connect --local`; resolves with the echo, rejects on a closed or failed connection. */
function echo(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.end(text));
    let got = '';
    socket.on('data', (chunk) => (got += chunk.toString()));
    socket.on('end', () => (got === text ? resolve(got) : reject(new Error(`got ${JSON.stringify(got)} for ${JSON.stringify(text)}`))));
    socket.on('error', reject);
  });
}

describe('a server on two proxies', () => {
  it('prints one endpoint naming both; when the proxy in use is killed, new flows go through the other within 2 s, and the server stays reachable', async () => {
    const config = isolatedConfig();
    for (const name of ['p1', 'p2']) expect((await runToExit(['keygen', '--out', `${config}/${name}.pem`], config)).code).toBe(0);
    const first = runCli(['start', '--listen', '127.0.0.1:0', '--identity', `${config}/p1.pem`], { config });
    const second = runCli(['start', '--listen', '127.0.0.1:0', '--identity', `${config}/p2.pem`], { config });
    const [p1, p2] = await Promise.all([first.firstLine, second.firstLine]);
    const serve = runCli(['serve', '--proxy', p1, '--proxy', p2, '--forward', String(await echoService())], { config });
    const endpoint = Endpoint.parse(await serve.firstLine);
    expect(endpoint.routes.map((route) => route.proxyRoutingId.toString())).toEqual([p1.slice(-32), p2.slice(-32)]);
    expect(endpoint.routes.map((route) => route.address)).toEqual([Endpoint.parse(p1).address, Endpoint.parse(p2).address]);

    const client = runCli(['connect', endpoint.toString(), '--local', '0'], { config });
    const local = Number((await client.firstLine).split(':').pop());
    expect(await echo(local, 'before')).toBe('before');

    // Round trips keep going while the first proxy, the one the VC runs through, dies.
    let stop = false;
    const outcomes: Array<{ at: number; ok: boolean }> = [];
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        const ok = await echo(local, `flow ${i}`).then(
          () => true,
          () => false,
        );
        outcomes.push({ at: Date.now(), ok });
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const killedAt = Date.now();
    first.child.kill('SIGKILL');
    await first.exited;
    await new Promise((resolve) => setTimeout(resolve, 3000));
    stop = true;
    await loop;
    const after = outcomes.filter((o) => o.at > killedAt);
    const firstOk = after.find((o) => o.ok);
    expect(firstOk, 'a round trip succeeded after the kill').toBeDefined();
    const recovery = firstOk!.at - killedAt;
    const failed = after.filter((o) => !o.ok).length;
    console.log(`first proxy killed: ${failed} local connections failed, the next through the other proxy ${recovery} ms after the kill; ${after.length - failed} round trips after`);
    expect(recovery).toBeLessThan(2000);
    // Once one got through, every later one did too.
    expect(after.slice(after.indexOf(firstOk!)).every((o) => o.ok)).toBe(true);
    await waitFor(() => client.stderr().includes('lost the VC to the server'), 'connect to log the lost VC');
    expect(serve.child.exitCode).toBeNull();
  }, 30_000);
});
