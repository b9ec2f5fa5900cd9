import { existsSync } from 'node:fs';
import { connect, constants, createServer } from 'node:http2';
import { dirname } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { describe, expect, test } from 'vitest';
import { createConnection } from '../../src/grpc/index.js';
import { useNetwork } from '../fixtures.js';
import { unary } from './service.js';
import { forwardTunnel } from './tunnels.js';

const net = useNetwork({ checkLeaks: true });

/** Fails if `promise` takes longer than `ms`: what hangs should fail the test, not time it out. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * A unary call the server never answers, a server stream and a bidi stream, all under way (the
 * stream has delivered messages); `ended` resolves to how each failed.
 */
async function callsInFlight(client: any): Promise<{ ended: Promise<ServiceError[]> }> {
  const hang = unary(client, 'hang', {}).then(
    () => {
      throw new Error('hang was answered');
    },
    (err: ServiceError) => err,
  );
  const streamFailure = (call: any, what: string): Promise<ServiceError> =>
    new Promise((resolve, reject) => {
      call.on('error', resolve);
      call.on('end', () => reject(new Error(`${what} ended without an error`)));
    });
  const drip = client.drip({});
  let received = 0;
  drip.on('data', () => received++);
  const chat = client.chat();
  let echoed = 0;
  chat.on('data', () => echoed++);
  chat.write({ text: 'a' });
  const ended = Promise.all([hang, streamFailure(drip, 'drip'), streamFailure(chat, 'chat')]);
  while (received < 3 || echoed < 1) await new Promise((resolve) => setTimeout(resolve, 5));
  return { ended };
}

const unavailable = Array(3).fill(expect.objectContaining({ code: status.UNAVAILABLE }));

type Tunnel = Awaited<ReturnType<typeof forwardTunnel>>;

/**
 * Starts the calls, runs `close` on the tunnel, and checks that it returns, that every call then
 * fails UNAVAILABLE, and that the server's hang handler sees its call cancelled.
 */
async function closeUnderCalls(what: string, close: (tunnel: Tunnel) => Promise<unknown>): Promise<Tunnel> {
  const tunnel = await forwardTunnel(net);
  const { ended } = await callsInFlight(tunnel.client);
  await within(close(tunnel), 10_000, what);
  expect(await within(ended, 5_000, 'the calls ending')).toEqual(unavailable);
  await within(tunnel.cancelled, 5_000, 'the hang handler seeing its call cancelled');
  return tunnel;
}

describe('closing while calls are in flight', () => {
  test('serving.close() resets the calls still running after drainTimeout: the clients see UNAVAILABLE, the handlers cancelled', async () => {
    await closeUnderCalls('serving.close()', ({ serving }) => serving.close({ drainTimeout: 200 }));
  });

  test('serving.close() lets a call in progress finish, and resolves once it has', async () => {
    const { client, serving } = await forwardTunnel(net);
    let call: any;
    const total = new Promise((resolve, reject) => {
      call = client.sum((err: ServiceError | null, reply: unknown) => (err ? reject(err) : resolve(reply)));
    });
    call.write({ n: 1 });
    // Answered on the same connection after the sum began: the sum's stream has reached the server.
    await unary(client, 'echo', { text: 'x' });
    const closed = serving.close({ drainTimeout: 60_000 });
    call.write({ n: 2 });
    call.end();
    expect(await within(total, 10_000, 'the call')).toEqual({ total: 3 });
    await within(closed, 10_000, 'serving.close() once no call was left');
  });

  test('bridge.close() fails the calls UNAVAILABLE, cancels the handlers, and removes its socket directory', async () => {
    const { bridge } = await closeUnderCalls('bridge.close()', ({ bridge }) => bridge.close());
    expect(existsSync(dirname(bridge.target.slice('unix://'.length)))).toBe(false);
  });

  test("the client's manager.close() fails the calls UNAVAILABLE, and the bridge then reports ERR_MANAGER_CLOSED", async () => {
    const { client, bridge } = await closeUnderCalls("the client's manager.close()", ({ clientManager }) => clientManager.close());
    const dialError = new Promise((resolve) => bridge.once('dialError', resolve));
    await expect(unary(client, 'echo', { text: 'x' }, { deadline: Date.now() + 5_000 })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    expect(await dialError).toMatchObject({ code: 'ERR_MANAGER_CLOSED' });
  });

  test("the server's manager.close() fails the calls UNAVAILABLE, cancels the handlers and ends serveGrpc", async () => {
    const { serving } = await closeUnderCalls("the server's manager.close()", ({ serverManager }) => serverManager.close());
    await within(serving.done, 5_000, 'serving.done');
  });
});

describe('plain HTTP/2 over createConnection, closing while a request streams', () => {
  async function streamingRequest(closeWhich: 'client' | 'server') {
    const proxy = await net.proxy({ host: '127.0.0.1', port: 0 });
    const serverManager = net.manager();
    const { endpoint } = await serverManager.proxyListen('web', proxy.endpoint);
    const timers = new Set<NodeJS.Timeout>();
    const web = createServer((_request, response) => {
      const timer = setInterval(() => response.write('tick\n'), 5);
      timers.add(timer);
      response.on('close', () => clearInterval(timer));
    });
    void (async () => {
      for await (const flow of serverManager) web.emit('connection', flow);
    })();
    net.defer(async () => {
      for (const timer of timers) clearInterval(timer);
      await new Promise((resolve) => web.close(resolve));
    });
    const clientManager = net.manager();
    const session = connect('http://service', { createConnection: () => createConnection(clientManager, endpoint) });
    const sessionErrors: Error[] = [];
    session.on('error', (err) => sessionErrors.push(err));
    net.defer(async () => session.destroy());
    const request = session.request({ ':path': '/stream' });
    const requestErrors: Error[] = [];
    request.on('error', (err) => requestErrors.push(err));
    let ticks = 0;
    request.on('data', () => ticks++);
    while (ticks < 3) await new Promise((resolve) => setTimeout(resolve, 5));
    const requestClosed = new Promise((resolve) => request.once('close', resolve));
    const sessionClosed = new Promise((resolve) => session.once('close', resolve));
    await within((closeWhich === 'client' ? clientManager : serverManager).close(), 10_000, 'manager.close()');
    await within(Promise.all([requestClosed, sessionClosed]), 5_000, 'the request and session closing');
    return { request, sessionErrors, requestErrors };
  }

  test("the client's manager.close() fails the session and the request with ERR_MANAGER_CLOSED, not a write after the end", async () => {
    const { sessionErrors, requestErrors } = await streamingRequest('client');
    expect([...sessionErrors, ...requestErrors].map((err) => (err as NodeJS.ErrnoException).code)).toEqual(['ERR_MANAGER_CLOSED', 'ERR_MANAGER_CLOSED']);
  });

  test("the server's manager.close() resets the request and closes the session", async () => {
    const { request, sessionErrors, requestErrors } = await streamingRequest('server');
    // The server's http2 session writes after close() ended its flow, which resets the flow: either
    // that reset (ERR_STREAM_RESET) or an RST_STREAM reaches the client first, by timing. Never a
    // clean end, which would pass the cut-off body as complete.
    const codes = [...sessionErrors, ...requestErrors].map((err) => (err as NodeJS.ErrnoException).code);
    expect(codes.every((code) => code === 'ERR_STREAM_RESET')).toBe(true);
    expect(codes.length > 0 || request.rstCode !== constants.NGHTTP2_NO_ERROR).toBe(true);
  });
});
