import { existsSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import puppeteer, { type Browser } from 'puppeteer-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type RawData } from 'ws';
import { waitFor } from '../helpers.js';
import { isolatedConfig, killAll } from './cli.js';
import { serveWeb, startWebProxy } from './web-cli.js';

/**
 * Issue 14, must show: a real browser (Debian's chromium, headless, driven by puppeteer-core)
 * loads a page through the web ingress, and the page's script opens a WebSocket back to its own
 * origin through it. Chromium resolves every *.tunnel.test name to 127.0.0.1 by its
 * --host-resolver-rules, so it asks for the URL serve printed exactly as it would with DNS.
 * .ci/run installs chromium; CHROMIUM_PATH names another binary.
 */

const DOMAIN = 'tunnel.test';
const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path));

/** The page: it sends one text and one binary message on a WebSocket to its own origin, and renders both echoes. */
const PAGE = `<!doctype html>
<html>
<head><meta charset="utf-8"><title>ridproxy ingress</title></head>
<body>
<p id="status">loading</p>
<p id="text"></p>
<p id="binary"></p>
<script>
const status = document.getElementById('status');
status.textContent = 'connecting';
const socket = new WebSocket('ws://' + location.host + '/echo');
socket.binaryType = 'arraybuffer';
socket.onopen = () => {
  status.textContent = 'open';
  socket.send('hello from ' + location.host);
  socket.send(new Uint8Array([0, 1, 2, 253, 254, 255]));
};
socket.onmessage = (event) => {
  if (typeof event.data === 'string') document.getElementById('text').textContent = event.data;
  else document.getElementById('binary').textContent = Array.from(new Uint8Array(event.data)).join(',');
  if (document.getElementById('text').textContent && document.getElementById('binary').textContent) socket.close(4001, 'rendered');
};
socket.onerror = () => { status.textContent = 'error'; };
socket.onclose = (event) => { status.textContent = 'closed ' + event.code + ' ' + event.reason; };
</script>
</body>
</html>
`;

interface PageService {
  port: number;
  /** The head of each plain request and each WebSocket upgrade, as the service received them. */
  requests: { url: string; headers: IncomingHttpHeaders }[];
  upgrades: { url: string; headers: IncomingHttpHeaders }[];
  closes: { code: number; reason: string }[];
}

let browser: Browser | undefined;
const servers: Server[] = [];

beforeAll(async () => {
  if (CHROMIUM === undefined) throw new Error("no chromium at /usr/bin/chromium: install Debian's chromium package (.ci/run does), or set CHROMIUM_PATH");
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    protocolTimeout: 60_000,
    args: [
      `--host-resolver-rules=MAP *.${DOMAIN} 127.0.0.1`,
      // Chromium refuses to run as root with its sandbox, and CI runs as root.
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      '--disable-dev-shm-usage',
      '--disable-gpu',
      '--no-first-run',
      '--disable-features=HttpsUpgrades',
    ],
  });
}, 90_000);

afterAll(async () => {
  await browser?.close();
});

afterEach(async () => {
  await killAll();
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
});

/** The local service: the page at / and, on the same port, a WebSocket echo at /echo that prefixes text with "echo: ". */
async function pageService(): Promise<PageService> {
  const service: PageService = { port: 0, requests: [], upgrades: [], closes: [] };
  const server = createServer((req, res) => {
    service.requests.push({ url: req.url ?? '', headers: req.headers });
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not here\n');
    }
  });
  servers.push(server);
  const wss = new WebSocketServer({ server, path: '/echo' });
  wss.on('connection', (socket, req) => {
    service.upgrades.push({ url: req.url ?? '', headers: req.headers });
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) socket.send(data as Buffer, { binary: true });
      else socket.send(`echo: ${data.toString()}`);
    });
    socket.on('close', (code: number, reason: Buffer) => service.closes.push({ code, reason: reason.toString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  service.port = (server.address() as AddressInfo).port;
  return service;
}

describe('a real browser through the web ingress', () => {
  it('loads a page from the URL serve printed, and the page talks WebSocket back through the ingress', async () => {
    const config = isolatedConfig();
    const service = await pageService();
    const web = await startWebProxy(config, DOMAIN);
    const { urls } = await serveWeb(config, web, service.port, 'app');
    const host = `app.${DOMAIN}:${web.httpPort}`;
    const url = urls.find((u) => u === `http://${host}/`)!;
    expect(url).toBeDefined();

    const page = await browser!.newPage();
    try {
      page.setDefaultTimeout(60_000);
      const response = await page.goto(url, { waitUntil: 'load' });
      expect(response?.status()).toBe(200);
      expect(await page.title()).toBe('ridproxy ingress');
      // The script's work is done once the page closed its socket with 4001 after both echoes.
      await page.waitForFunction(`document.getElementById('status').textContent.startsWith('closed')`);
      const rendered = (await page.evaluate(`[...document.querySelectorAll('p')].map((p) => p.id + '=' + p.textContent)`)) as string[];
      expect(rendered).toEqual(['status=closed 4001 rendered', `text=echo: hello from ${host}`, 'binary=0,1,2,253,254,255']);
    } finally {
      await page.close();
    }

    // Both the page and the WebSocket went through the ingress under the app's name.
    const pageRequest = service.requests.find((r) => r.url === '/')!;
    expect(pageRequest.headers).toMatchObject({ host, 'x-forwarded-host': host, 'x-forwarded-proto': 'http', 'x-forwarded-for': '127.0.0.1' });
    expect(service.upgrades).toHaveLength(1);
    expect(service.upgrades[0].url).toBe('/echo');
    expect(service.upgrades[0].headers).toMatchObject({ host, origin: `http://${host}`, upgrade: 'websocket', 'x-forwarded-host': host });
    expect(service.upgrades[0].headers['user-agent']).toMatch(/HeadlessChrome|Chrome/);
    await waitFor(() => service.closes.length > 0, 'the service to see the page close its socket', 30_000);
    expect(service.closes).toEqual([{ code: 4001, reason: 'rendered' }]);
  });
});
