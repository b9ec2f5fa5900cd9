import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { runPool } from '../../bench/lib/pool.js';
import { delay, waitFor } from '../helpers.js';
import { isolatedConfig, killAll, runCli, runToExit } from './cli.js';

/**
 * One `proxy connect --local` is one VC: every local TCP connection is a flow on it. Users put
 * thousands of connections through one tunnel (a web app's clients, a connection pool), so the
 * flows a VC carries must not stop at a small fixed number.
 */

const CONNECTIONS = 10_000;
const CONNECTING_AT_ONCE = 400;
const MESSAGE = 1024;

/** A TCP echo service in its own process, so this one holds only the client side's descriptors. */
async function startEchoProcess(): Promise<{ port: number; kill(): void }> {
  const script = `require('net').createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s); }).listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, function () { console.log(this.address().port); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('exit', (code) => reject(new Error(`the echo process exited with ${code}`)));
  });
  return { port, kill: () => child.kill('SIGKILL') };
}

/** Connects, sends one message and resolves once its echo is back, intact; the socket stays open. */
function echoOnce(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const message = randomBytes(MESSAGE);
    const expected = createHash('sha256').update(message).digest('hex');
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let received = 0;
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('the connection closed before its echo came back')));
    socket.once('connect', () => socket.write(message));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < MESSAGE) return;
      const digest = createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
      if (received !== MESSAGE || digest !== expected) reject(new Error(`the echo came back altered (${received} bytes)`));
      else resolve(socket);
    });
  });
}

describe('many connections through one tunnel', () => {
  const sockets: Socket[] = [];
  let echo: { kill(): void } | undefined;
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    echo?.kill();
    await killAll();
  });

  it(`carries ${CONNECTIONS.toLocaleString('en-US')} concurrent TCP connections through one connect --local, each echoed intact`, async () => {
    const config = isolatedConfig();
    const service = await startEchoProcess();
    echo = service;
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const serve = runCli(['serve', '--proxy', await proxy.firstLine, '--forward', String(service.port), '--log-level', 'warn'], { config });
    const local = runCli(['connect', await serve.firstLine, '--local', '0', '--log-level', 'warn'], { config });
    const port = Number((await local.firstLine).split(':').pop());
    const started = Date.now();
    await runPool(CONNECTIONS, CONNECTING_AT_ONCE, async () => {
      sockets.push(await echoOnce(port));
    });
    // Every socket is still open here, so every one of its flows is too: all at once on one VC.
    expect(sockets.filter((s) => !s.destroyed)).toHaveLength(CONNECTIONS);
    console.log(`${CONNECTIONS} connections echoed and held open at once through one connect in ${Date.now() - started} ms`);
    const status = await runToExit(['status', '--json', await proxy.firstLine], config);
    expect(JSON.parse(status.stdout)).toMatchObject({ vcs: 1 });
    expect(local.stderr()).not.toMatch(/cannot reach|ERR_/);
    for (const socket of sockets.splice(0)) socket.destroy();
  }, 180_000);

  it('closes the connection past --max-flows and says which option to raise', async () => {
    const config = isolatedConfig();
    const service = await startEchoProcess();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const serve = runCli(['serve', '--proxy', await proxy.firstLine, '--forward', String(service.port), '--log-level', 'warn'], { config });
    const local = runCli(['connect', await serve.firstLine, '--local', '0', '--max-flows', '2', '--log-level', 'warn'], { config });
    const port = Number((await local.firstLine).split(':').pop());
    try {
      const held = [await echoOnce(port), await echoOnce(port)];
      sockets.push(...held);
      await expect(echoOnce(port)).rejects.toThrow();
      // The log is written in the background: the line may follow the close.
      await waitFor(() => /ERR_STREAM_LIMIT.*raise --max-flows/.test(local.stderr()), 'connect to log the limit and the option to raise');
      // Room again once a connection closes.
      held[0].destroy();
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          sockets.push(await echoOnce(port));
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await delay(100);
        }
      }
    } finally {
      service.kill();
    }
  }, 60_000);
});
