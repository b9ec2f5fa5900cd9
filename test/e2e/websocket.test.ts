import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { loopbackLookup, waitFor } from '../helpers.js';
import { isolatedConfig, killAll } from './cli.js';
import { serveWeb, startWebProxy } from './web-cli.js';

/**
 * Issue 14, must show: a WebSocket echo through the web ingress (real `proxy start --http` and
 * `proxy serve --name` processes, a `ws` server as the local service, a `ws` client dialing the
 * URL serve printed), 10,000 messages intact and in order, and close codes carried both ways.
 */

const DOMAIN = 'tunnel.test';
const servers: WebSocketServer[] = [];
const clients: WebSocket[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.terminate();
  await killAll();
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          for (const peer of server.clients) peer.terminate();
          server.close(() => resolve());
        }),
    ),
  );
});

interface EchoService {
  port: number;
  /** The head of each upgrade request the service accepted, as it arrived. */
  upgrades: IncomingHttpHeaders[];
  /** The close code and reason each of its connections ended with, as the service saw them. */
  closes: { code: number; reason: string }[];
}

/**
 * The local service: a WebSocket server that echoes every message as it came (text as text,
 * binary as binary), closes with 4002 "server done" when it is sent the text "close please", and
 * drops the TCP connection without a close frame when sent "drop please". Of the subprotocols a
 * client offers it picks the last.
 */
async function echoService(): Promise<EchoService> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (protocols) => [...protocols].pop() ?? false });
  servers.push(server);
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const service: EchoService = { port: (server.address() as AddressInfo).port, upgrades: [], closes: [] };
  server.on('connection', (socket, req) => {
    service.upgrades.push(req.headers);
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary && data.toString() === 'close please') socket.close(4002, 'server done');
      else if (!isBinary && data.toString() === 'drop please') socket.terminate();
      else socket.send(data as Buffer, { binary: isBinary });
    });
    socket.on('close', (code: number, reason: Buffer) => service.closes.push({ code, reason: reason.toString() }));
  });
  return service;
}

/** Resolves every name to 127.0.0.1, so the client dials the URL serve printed, Host header and all, as a browser with DNS would. */
function open(url: string, protocols: string[] = []): Promise<WebSocket> {
  const client = new WebSocket(url, protocols, { lookup: loopbackLookup as never, perMessageDeflate: false, handshakeTimeout: 30_000 });
  clients.push(client);
  return new Promise((resolve, reject) => {
    client.once('open', () => resolve(client));
    client.once('error', reject);
    client.once('unexpected-response', (_req, res) => reject(new Error(`the ingress answered ${res.statusCode} to the upgrade`)));
  });
}

function closed(client: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => client.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
}

/** A small deterministic PRNG (mulberry32), so a failure names a message that a rerun sends again. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Message {
  binary: boolean;
  data: Buffer;
}

/**
 * 10,000 messages, half text and half binary in a shuffled mix: most of them short, every 50th
 * large (up to 64 KiB), and the WebSocket frame-length boundaries (0, 125, 126, 65535, 65536
 * bytes) among them. Text is UTF-8 with 1- to 4-byte characters.
 */
function messages(count: number): Message[] {
  const random = prng(14);
  const boundaries = [0, 1, 125, 126, 127, 65_535, 65_536];
  const alphabet = ['a', 'Z', '7', ' ', 'é', 'ß', '€', '中', '😀'];
  const out: Message[] = [];
  for (let i = 0; i < count; i++) {
    const binary = random() < 0.5;
    const size = i < boundaries.length * 2 ? boundaries[i >> 1] : i % 50 === 0 ? 1 + Math.floor(random() * 65_536) : Math.floor(random() * 2048);
    if (binary) {
      const data = Buffer.alloc(size);
      for (let j = 0; j < size; j++) data[j] = Math.floor(random() * 256);
      out.push({ binary, data });
    } else {
      // Whole characters up to `size` bytes, then ASCII to fill it exactly.
      const chars: string[] = [];
      let bytes = 0;
      for (;;) {
        const char = alphabet[Math.floor(random() * alphabet.length)];
        const length = Buffer.byteLength(char);
        if (bytes + length > size) break;
        chars.push(char);
        bytes += length;
      }
      out.push({ binary, data: Buffer.from(chars.join('') + 'x'.repeat(size - bytes)) });
    }
  }
  return out;
}

describe('WebSocket through the web ingress', () => {
  it('echoes 10,000 mixed text and binary messages intact and in order, then carries the client close code 4001 "done" to the service and back', async () => {
    const config = isolatedConfig();
    const service = await echoService();
    const web = await startWebProxy(config, DOMAIN);
    const { urls } = await serveWeb(config, web, service.port, 'app');
    const url = urls.find((u) => u.startsWith(`http://app.${DOMAIN}:`))!.replace(/^http:/, 'ws:') + 'echo';

    const client = await open(url, ['echo.v1', 'echo.v2']);
    // The service saw the upgrade the client asked for, with the proxy's forwarding headers, and its answer came back.
    expect(client.protocol).toBe('echo.v2');
    expect(service.upgrades).toHaveLength(1);
    expect(service.upgrades[0]['sec-websocket-protocol']).toBe('echo.v1,echo.v2');
    expect(service.upgrades[0]).toMatchObject({ host: `app.${DOMAIN}:${web.httpPort}`, upgrade: 'websocket', 'x-forwarded-host': `app.${DOMAIN}:${web.httpPort}`, 'x-forwarded-proto': 'http', 'x-forwarded-for': '127.0.0.1' });

    const sent = messages(10_000);
    const received: Message[] = [];
    client.on('message', (data: RawData, isBinary: boolean) => received.push({ binary: isBinary, data: data as Buffer }));
    // Keep at most 256 messages in flight: the ingress has to carry a steady stream both ways, not one burst.
    const window = 256;
    let next = 0;
    const pump = (): void => {
      while (next < sent.length && next - received.length < window) {
        const message = sent[next++];
        client.send(message.data, { binary: message.binary });
      }
    };
    client.on('message', pump);
    pump();
    await waitFor(() => received.length >= sent.length, `${sent.length} echoes (have ${received.length})`, 100_000);

    expect(received).toHaveLength(sent.length);
    const mismatches: number[] = [];
    for (let i = 0; i < sent.length; i++) {
      if (received[i].binary !== sent[i].binary || !received[i].data.equals(sent[i].data)) mismatches.push(i);
    }
    expect(mismatches.slice(0, 10), 'the first messages that came back different or out of order').toEqual([]);
    const digest = (list: Message[]): string => {
      const hash = createHash('sha256');
      for (const m of list) hash.update(`${m.binary ? 'b' : 't'}${m.data.length}:`).update(m.data);
      return hash.digest('hex');
    };
    expect(digest(received)).toBe(digest(sent));
    expect(sent.filter((m) => m.binary).length).toBeGreaterThan(4000);
    expect(sent.filter((m) => !m.binary).length).toBeGreaterThan(4000);
    expect(Math.max(...sent.map((m) => m.data.length))).toBe(65_536);

    const clientSaw = closed(client);
    client.close(4001, 'done');
    expect(await clientSaw).toEqual({ code: 4001, reason: 'done' });
    await waitFor(() => service.closes.length === 1, 'the service to see the close', 30_000);
    expect(service.closes[0]).toEqual({ code: 4001, reason: 'done' });
  });

  it('carries a close the service starts, 4002 "server done", to the client, and the connection ends on both sides', async () => {
    const config = isolatedConfig();
    const service = await echoService();
    const web = await startWebProxy(config, DOMAIN);
    const { urls, serve } = await serveWeb(config, web, service.port, 'closer');
    const url = urls.find((u) => u.startsWith(`http://closer.${DOMAIN}:`))!.replace(/^http:/, 'ws:');

    const client = await open(url);
    const echoed = new Promise<string>((resolve) => client.once('message', (data: RawData) => resolve(data.toString())));
    client.send('before the close');
    expect(await echoed).toBe('before the close');

    const clientSaw = closed(client);
    client.send('close please');
    expect(await clientSaw).toEqual({ code: 4002, reason: 'server done' });
    await waitFor(() => service.closes.length === 1, 'the service to see its close answered', 30_000);
    expect(service.closes[0]).toEqual({ code: 4002, reason: 'server done' });
    // The flow through the VC ended too: serve logs it as finished.
    await waitFor(() => serve.stderr().includes('"event":"flow"'), 'serve to log the finished flow', 30_000);
  });

  it('ends the client with 1006 when the service drops the connection without a close frame, and the service with 1006 when the client does', async () => {
    const config = isolatedConfig();
    const service = await echoService();
    const web = await startWebProxy(config, DOMAIN);
    const { urls } = await serveWeb(config, web, service.port, 'dropper');
    const url = urls.find((u) => u.startsWith(`http://dropper.${DOMAIN}:`))!.replace(/^http:/, 'ws:');

    const dropped = await open(url);
    const droppedSaw = closed(dropped);
    dropped.send('drop please');
    expect(await droppedSaw).toEqual({ code: 1006, reason: '' });
    await waitFor(() => service.closes.length === 1, 'the service to close the dropped connection', 30_000);

    const leaving = await open(url);
    const echoed = new Promise<string>((resolve) => leaving.once('message', (data: RawData) => resolve(data.toString())));
    leaving.send('still here');
    expect(await echoed).toBe('still here');
    leaving.terminate();
    await waitFor(() => service.closes.length === 2, 'the service to see the client go', 30_000);
    expect(service.closes[1]).toEqual({ code: 1006, reason: '' });
  });
});
