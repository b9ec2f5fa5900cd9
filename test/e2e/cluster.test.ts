import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sha256, waitFor } from '../helpers.js';
import { startNats, stopAllNats } from '../cluster/nats.js';
import { isolatedConfig, killAll, runCli, runToExit, type CliProcess } from './cli.js';

const servers: Server[] = [];

afterEach(async () => {
  await killAll();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});
afterAll(stopAllNats);

async function echoServer(): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket).on('error', () => undefined));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** Sends `data` to 127.0.0.1:port, half-closes, and resolves to what came back. */
function roundTrip(port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => {
      socket.end();
      resolve(Buffer.concat(chunks));
    });
    socket.on('error', reject);
    socket.end(data);
  });
}

describe('proxy start --cluster', () => {
  it('reaches a server registered on one proxy through another, and a second serve of the same identity on another proxy stops the first', async () => {
    const nats = await startNats();
    const config = isolatedConfig();
    const keys = await Promise.all(['a', 'b'].map(async (name) => ({ file: join(config, `${name}.pem`), rid: (await runToExit(['keygen', '--out', join(config, `${name}.pem`)], config)).stdout.trim() })));
    const peers = join(config, 'peers');
    writeFileSync(peers, `# the cluster\n${keys.map((key) => key.rid).join('\n')}\n`);
    const proxies: CliProcess[] = keys.map((key) =>
      runCli(['start', '--listen', '127.0.0.1:0', '--identity', key.file, '--cluster', nats.url, '--cluster-peers-file', peers], { config }),
    );
    const [endpointA, endpointB] = await Promise.all(proxies.map((proxy) => proxy.firstLine));
    for (const proxy of proxies) await waitFor(() => proxy.stderr().includes('"event":"clusterDirectory","state":"connected"'), 'the directory', 10_000);

    const echoPort = await echoServer();
    const identity = join(config, 'server.pem');
    await runToExit(['keygen', '--out', identity], config);
    const serveB = runCli(['serve', '--proxy', endpointB, '--forward', String(echoPort), '--identity', identity], { config });
    const serverEndpoint = await serveB.firstLine;
    const serverRid = serverEndpoint.slice(-32);
    // The same server, by routing id, through proxy A.
    const throughA = `ridp://${endpointA.slice(-32)}@${endpointA.slice('ridp://'.length, -33)}/${serverRid}`;
    const connectA = runCli(['connect', throughA, '--local', '0'], { config });
    const localPort = Number((await connectA.firstLine).split(':').pop());
    const data = randomBytes(4 << 20);
    let echoed: Buffer | undefined;
    // The registration reaches the directory a moment after serve printed its endpoint.
    await waitFor(async () => {
      echoed = await roundTrip(localPort, data).catch(() => undefined);
      return echoed !== undefined && echoed.length > 0;
    }, 'a round trip through proxy A');
    expect(sha256(echoed!)).toBe(sha256(data));
    await waitFor(() => proxies[0].stderr().includes('"event":"clusterLink"'), 'proxy A to log its link to B');
    expect(proxies[0].stderr()).toContain(`link to cluster proxy ${keys[1].rid}`);

    // The same identity served on proxy A: proxy B's registration ends, and its serve stops.
    const serveA = runCli(['serve', '--proxy', endpointA, '--forward', String(echoPort), '--identity', identity], { config });
    await serveA.firstLine;
    const { code } = await serveB.exited;
    expect(code).toBe(1);
    expect(serveB.stderr()).toMatch(/another process with this identity registered on .* from 127\.0\.0\.1:\d+; give each serve its own --identity/);
    await waitFor(() => proxies[1].stderr().includes('"event":"clusterSuperseded"'), 'proxy B to log the supersede');
    const again = await roundTrip(localPort, data);
    expect(sha256(again)).toBe(sha256(data));
  });

  it('refuses --cluster without a peers file, and cluster flags without --cluster', async () => {
    const config = isolatedConfig();
    const missing = await runToExit(['start', '--listen', '127.0.0.1:0', '--cluster', 'nats://127.0.0.1:1'], config);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('--cluster needs --cluster-peers-file');
    const alone = await runToExit(['start', '--listen', '127.0.0.1:0', '--advertise', '127.0.0.1:9'], config);
    expect(alone.code).toBe(1);
    expect(alone.stderr).toContain('--advertise needs --cluster');
  });
});
