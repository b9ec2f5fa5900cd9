import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { YamuxSession, type YamuxStream } from '../../src/mux/index.js';
import { readAll, sha256, sleep, waitFor } from './helpers.js';

/*
 * Interop with hashicorp/yamux itself (the reference implementation), as Debian packages it:
 * `test/mux/go-peer/main.go` is built once per run of this file with the system's `go` in GOPATH
 * mode against /usr/share/gocode (golang-go and golang-github-hashicorp-yamux-dev, which .ci/run
 * installs), so nothing is downloaded. The Go side opens its streams from goroutines released at
 * once, so their SYNs reach us in whatever order the goroutines got to send them.
 */

const execFileAsync = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const KiB = 1024;
const STREAMS = 100;
/** Every tenth echo stream carries this much: above the 256 KiB window, so both sides must send and honour updates. */
const BIG_ECHO = 300 * KiB;

let buildDir = '';
let peerBinary = '';

beforeAll(async () => {
  buildDir = await mkdtemp(join(tmpdir(), 'ridproxy-go-peer-'));
  peerBinary = join(buildDir, 'go-peer');
  const env = {
    ...process.env,
    GO111MODULE: 'off',
    GOPATH: '/usr/share/gocode',
    GOCACHE: join(buildDir, 'cache'),
    GOFLAGS: '',
  };
  try {
    await execFileAsync('go', ['build', '-o', peerBinary, '.'], { cwd: join(here, 'go-peer'), env, timeout: 240_000 });
  } catch (err) {
    throw new Error(
      `could not build test/mux/go-peer (needs Debian's golang-go and golang-github-hashicorp-yamux-dev; .ci/run installs them): ${(err as Error).message}`,
    );
  }
}, 300_000);

afterAll(async () => {
  if (buildDir) await rm(buildDir, { recursive: true, force: true });
});

interface GoPeer {
  proc: ChildProcess;
  /** Resolves to the first stdout line that starts with `prefix`. */
  line(prefix: string): Promise<string>;
  /** Resolves to the exit code, with what the peer wrote to stderr. */
  exited: Promise<{ code: number | null; stderr: string }>;
}

function startGoPeer(args: string[]): GoPeer {
  const proc = spawn(peerBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  const exited = once(proc, 'exit').then(([code]) => ({ code: code as number | null, stderr }));
  return {
    proc,
    exited,
    async line(prefix) {
      for (;;) {
        const found = lines.find((l) => l.startsWith(prefix));
        if (found) return found;
        const more = new Promise<void>((resolve) => waiters.push(resolve));
        const exit = exited.then(({ code }) => {
          throw new Error(`go-peer exited (${code}) before printing "${prefix}": ${stderr}`);
        });
        await Promise.race([more, exit]);
      }
    },
  };
}

/** Go as yamux client dialing us: resolves to our server session once the connection is up. */
async function goAsClient(task: string, extra: string[] = []): Promise<{ go: GoPeer; ours: YamuxSession; socket: net.Socket }> {
  const listener = net.createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as net.AddressInfo;
  const accepted = once(listener, 'connection') as Promise<[net.Socket]>;
  const go = startGoPeer(['-role', 'client', '-addr', `127.0.0.1:${port}`, '-task', task, ...extra]);
  const [socket] = await Promise.race([
    accepted,
    go.exited.then(({ code, stderr }) => {
      throw new Error(`go-peer exited (${code}) before connecting: ${stderr}`);
    }),
  ]);
  listener.close();
  socket.setNoDelay(true);
  return { go, ours: new YamuxSession(socket, { client: false, keepAliveInterval: 0 }), socket };
}

/** Go as yamux server: we dial it, and resolve to our client session. */
async function goAsServer(task: string, extra: string[] = []): Promise<{ go: GoPeer; ours: YamuxSession; socket: net.Socket }> {
  const go = startGoPeer(['-role', 'server', '-task', task, ...extra]);
  const port = Number((await go.line('LISTEN ')).split(' ')[1]);
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.setNoDelay(true);
  return { go, ours: new YamuxSession(socket, { client: true, keepAliveInterval: 0 }), socket };
}

/** The body go-peer sends on its stream `k`: an 8-byte header (index, length) and a pattern. */
function goPayload(k: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(8 + size);
  b.writeUInt32BE(k, 0);
  b.writeUInt32BE(size, 4);
  for (let i = 0; i < size; i++) b[8 + i] = (i * 131 + k * 17 + (i >>> 16)) & 0xff;
  return b;
}

/** Checks a body received from go-peer against the pattern its header names; returns the stream index. */
function checkGoPayload(body: Buffer): number {
  expect(body.length).toBeGreaterThanOrEqual(8);
  const k = body.readUInt32BE(0);
  const size = body.readUInt32BE(4);
  expect(body.length).toBe(8 + size);
  expect(body.equals(goPayload(k, size))).toBe(true);
  return k;
}

/** What we send on our stream `k` to go-peer's echo: sizes like the Go side's, every tenth above the window. */
function ourPayload(k: number): Buffer {
  const size = k % 10 === 9 ? BIG_ECHO : 1 + ((k * 7919) % (64 * KiB));
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 251 + k * 13) & 0xff;
  return b;
}

/** Opens `count` streams at once to go-peer's echo, and checks each reply against what was sent. */
async function echoFromOurs(ours: YamuxSession, count: number): Promise<void> {
  const streams = Array.from({ length: count }, () => ours.openStream());
  await Promise.all(
    streams.map(async (stream, k) => {
      const payload = ourPayload(k);
      const reply = readAll(stream);
      stream.write('E');
      stream.end(payload);
      const got = await reply;
      expect(got.length).toBe(payload.length);
      expect(got.equals(payload)).toBe(true);
    }),
  );
}

/** Closes our session once the Go side has finished its task, and checks both ended cleanly. */
async function finish(go: GoPeer, ours: YamuxSession): Promise<void> {
  await waitFor(() => ours.streamCount === 0, 20_000);
  ours.close();
  expect(await ours.closed).toBeUndefined();
  const { code, stderr } = await go.exited;
  expect(stderr).not.toMatch(/\[ERR\]/);
  expect(code, stderr).toBe(0);
}

/**
 * Echoes every stream the Go peer opens while opening as many of ours, then waits for the Go
 * side's verdict; returns the ids of the streams it opened.
 */
async function echoBothWays(go: Awaited<ReturnType<typeof goAsClient>>['go'], ours: YamuxSession): Promise<number[]> {
  const acceptedIds: number[] = [];
  ours.on('stream', (stream: YamuxStream) => {
    acceptedIds.push(stream.id);
    stream.pipe(stream);
  });
  await echoFromOurs(ours, STREAMS);
  expect(await go.line('TASK ')).toBe(`TASK ok ${STREAMS}`);
  expect(acceptedIds).toHaveLength(STREAMS);
  return acceptedIds;
}

describe('interop with hashicorp/yamux (Go) over TCP', { timeout: 60_000 }, () => {
  it('Go as client: 100 streams from goroutines at once and 100 from us, echoed and checked both ways', async () => {
    const { go, ours } = await goAsClient('echo', ['-streams', String(STREAMS), '-size', String(BIG_ECHO)]);
    const acceptedIds = await echoBothWays(go, ours);
    expect(new Set(acceptedIds).size).toBe(STREAMS);
    expect(acceptedIds.every((id) => id % 2 === 1)).toBe(true);
    await finish(go, ours);
  });

  it('Go as server: 100 streams from goroutines at once and 100 from us, echoed and checked both ways', async () => {
    const { go, ours } = await goAsServer('echo', ['-streams', String(STREAMS), '-size', String(BIG_ECHO)]);
    const acceptedIds = await echoBothWays(go, ours);
    expect(acceptedIds.every((id) => id % 2 === 0)).toBe(true);
    await finish(go, ours);
  });

  it('window: Go stops at 256 KiB while we do not read, the 4 MiB then arrive intact; our 4 MiB to Go hash the same', async () => {
    const size = 4 << 20;
    const { go, ours } = await goAsClient('big', ['-size', String(size)]);
    const incoming = new Promise<YamuxStream>((resolve) => ours.once('stream', resolve));
    const theirs = await incoming;
    // Nothing reads: Go may send one window and must then wait for our WindowUpdate.
    await waitFor(() => theirs.readableLength >= 256 * KiB, 10_000);
    await sleep(300);
    expect(theirs.readableLength).toBe(256 * KiB);
    const body = await readAll(theirs);
    expect(checkGoPayload(body)).toBe(0);
    expect(body.length).toBe(8 + size);
    expect(await go.line('TASK ')).toBe('TASK ok 1');
    theirs.end();

    // The other way: a 4 MiB write must follow Go's window updates (an overrun would make Go end the session).
    const big = ourPayload(7);
    const data = Buffer.concat(Array.from({ length: 4 << 20 >> 14 }, (_, i) => big.subarray(0, 16 * KiB).fill(i & 0xff, 0, 1)));
    const stream = ours.openStream();
    const reply = readAll(stream);
    stream.write('H');
    stream.end(data);
    expect((await reply).toString()).toBe(`${data.length} ${sha256(data)}\n`);
    await finish(go, ours);
  });

  it('half-close: Go FINs 20 streams and still takes our reply; Go replies on 20 of ours after our FIN', async () => {
    const { go, ours } = await goAsServer('fin', ['-streams', '20', '-size', String(100 * KiB)]);
    const seen = new Set<number>();
    const replied: Array<Promise<void>> = [];
    ours.on('stream', (stream: YamuxStream) => {
      const done = readAll(stream).then(
          (body) =>
            new Promise<void>((resolve, reject) => {
              // Their FIN ended our readable side; our writable side is still open.
              seen.add(checkGoPayload(body));
              expect(stream.writableEnded).toBe(false);
              stream.end(Buffer.from('received'), (err?: Error | null) => (err ? reject(err) : resolve()));
            }),
      );
      // Awaited below, once all have come; until then a failure must not count as unhandled.
      done.catch(() => {});
      replied.push(done);
    });
    expect(await go.line('TASK ')).toBe('TASK ok 20');
    await waitFor(() => replied.length === 20, 10_000);
    await Promise.all(replied);
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, k) => k));

    await Promise.all(
      Array.from({ length: 20 }, async (_, k) => {
        const payload = ourPayload(k);
        const stream = ours.openStream();
        const reply = readAll(stream);
        stream.write('H');
        stream.end(payload);
        expect((await reply).toString()).toBe(`${payload.length} ${sha256(payload)}\n`);
      }),
    );
    await finish(go, ours);
  });
});
