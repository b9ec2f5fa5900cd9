import { closeSync, fstatSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { Duplex, type Writable } from 'node:stream';
import type { Command } from 'commander';
import { InvalidArgumentError, cannotListen } from '../../errors.js';
import { Endpoint, parseAddress } from '../../id/endpoint.js';
import { loadIdentity } from '../../id/identity.js';
import type { Flow } from '../../manager/flow.js';
import { Manager } from '../../manager/manager.js';
import { splice } from '../../manager/splice.js';
import { addTunnelOptions, reloadLogLevel, type TunnelOptions } from '../common.js';
import { describe } from '../describe.js';
import { createLogger, type CliLogger, type Logger } from '../logger.js';
import { exposeMetrics, TunnelMetrics } from '../metrics.js';
import { secretOption } from '../secrets.js';
import { awaitServiceReady } from '../../tunnel/protocol.js';

const dialToken = secretOption('dial-token', 'dial', "the proxy's dial token, if it requires one (sent only as a MAC bound to the connection)");

interface ConnectOptions extends TunnelOptions {
  local?: string;
  stdio?: boolean;
  identity?: string;
  insecureAnyProxy?: boolean;
}

export function registerConnect(program: Command): void {
  const command = program
    .command('connect')
    .description(
      'Reach a service exported with `proxy serve`: each local TCP connection (or stdin/stdout) becomes a flow to it, all on one VC. If the VC is lost, it logs a warning and the next connection dials a new one. SIGHUP reloads the log level from --config.',
    )
    .argument('<endpoint>', 'the endpoint `proxy serve` printed (ridp://<proxy rid>@host:port/<rid>): the proxy and the server must each prove their routing id')
    .option('--local <[host:]port>', 'accept local TCP connections here (host defaults to 127.0.0.1)')
    .option('--stdio', 'carry one flow on stdin/stdout, e.g. for ssh -o ProxyCommand')
    .option('--identity <file>', 'identity to dial with, so the server sees the same routing id each run (mode 0600: a file group or others may access is refused; default: a new one for this run)')
    .option('--insecure-any-proxy', "accept whatever process answers at an endpoint that does not name the proxy's routing id (its key is not checked: the end-to-end check of the server still holds, but an impostor proxy could attack a dial token offline)")
    .addHelpText(
      'after',
      `
Examples:
  $ npx proxy connect ridp://9a0c...@203.0.113.7:8100/4f1c... --local 9000
  127.0.0.1:9000        <- point your client here
  $ ssh -o ProxyCommand='npx proxy connect ridp://9a0c...@203.0.113.7:8100/4f1c... --stdio' user@anything`,
    );
  addTunnelOptions(dialToken.addTo(command), 'unless the last dial failed (503 until one succeeds)').action(async (endpointText: string, options: ConnectOptions, self: Command) => {
    const token = await dialToken.resolve(options);
    const endpoint = Endpoint.parse(endpointText);
    if ((options.local === undefined) === (options.stdio === undefined)) {
      throw new InvalidArgumentError('ERR_INVALID_OPTION', 'give exactly one of --local [host:]port or --stdio');
    }
    if (endpoint.routingId.isNull()) {
      throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', `endpoint "${endpointText}" has no routing id; use the endpoint \`proxy serve\` printed`);
    }
    const metricsAddress = options.metrics === undefined ? undefined : parseAddress(options.metrics, '127.0.0.1');
    const { log, announce } = createLogger({ level: options.logLevel, pretty: options.pretty });
    const identity = options.identity ? await loadIdentity(options.identity) : undefined;
    const manager = new Manager({ identity, maxFlowsPerVc: options.maxFlows });
    // Every local connection dials; the manager reuses the VC while it lives and opens a new one
    // after it is lost. Say when that happens, once per VC, so a dead tunnel is not silent.
    const metrics = new TunnelMetrics();
    const vcsLost = metrics.counter('ridproxy_connect_vcs_lost_total', 'Times the VC to the server was lost (the next connection dials again).');
    let lastDialFailed = false;
    const watched = new WeakSet<Flow['conn']>();
    let closing = false;
    const watch = (flow: Flow): Flow => {
      lastDialFailed = false;
      if (watched.has(flow.conn)) return flow;
      watched.add(flow.conn);
      void flow.conn.closed.then((err) => {
        if (err === undefined || closing) return;
        vcsLost.inc();
        log.warn({ endpoint: endpoint.toString(), reason: describe(err), code: (err as { code?: string }).code }, 'lost the VC to the server; the next connection dials again');
      });
      return flow;
    };
    const reload = (): void => reloadLogLevel(self, log);
    process.on('SIGHUP', reload);
    let stopMetrics: (() => void) | undefined;
    try {
      if (metricsAddress !== undefined) stopMetrics = await exposeMetrics(metricsAddress, () => metrics.scrape(), metrics.registry.contentType, () => !lastDialFailed, log);
      const dial = async (): Promise<Flow> => {
        try {
          return watch(await manager.dial(endpoint, { token: token?.value, allowUnpinnedProxy: options.insecureAnyProxy }));
        } catch (err) {
          lastDialFailed = true;
          throw err;
        }
      };
      if (options.stdio) await connectStdio(dial, endpoint, log);
      else await connectLocal(dial, endpoint, options.local!, { log, announce }, metrics);
    } finally {
      stopMetrics?.();
      process.off('SIGHUP', reload);
      closing = true;
      await manager.close();
    }
  });
}

async function connectStdio(dial: () => Promise<Flow>, endpoint: Endpoint, log: Logger): Promise<void> {
  const flow = await dial();
  flow.on('error', (err) => log.debug({ reason: describe(err) }, 'flow failed'));
  await awaitServiceReady(flow);
  log.debug({ endpoint: endpoint.toString() }, 'connected');
  await splice(flow, Duplex.from({ readable: process.stdin, writable: closableStdout() }));
}

/**
 * The remote's end must reach the local program as EOF, as with ssh -W: a ProxyCommand's ssh
 * waits for it when the server hangs up without a word. process.stdout never closes its
 * descriptor, so a pipe or socket on fd 1 gets a stream of its own that does; a file or a
 * terminal is closed by the process's exit.
 */
function closableStdout(): Writable {
  const stat = fstatSync(1);
  if (!stat.isFIFO() && !stat.isSocket()) return process.stdout;
  const socket = new Socket({ fd: 1, readable: false, writable: true });
  // libuv never closes descriptors 0-2, even with their handle: once the handle is gone (nothing
  // watches the descriptor any more), close it here, which is the EOF.
  socket.once('finish', () => socket.destroy());
  socket.once('close', () => closeSync(1));
  return socket;
}

async function connectLocal(dial: () => Promise<Flow>, endpoint: Endpoint, local: string, { log, announce }: CliLogger, metrics: TunnelMetrics): Promise<void> {
  const { host, port } = parseAddress(local, '127.0.0.1');
  const active = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    active.add(socket);
    socket.on('close', () => active.delete(socket));
    socket.on('error', () => undefined);
    const client = `${socket.remoteAddress}:${socket.remotePort}`;
    void (async () => {
      let flow: Flow | undefined;
      let ended: ((outcome: string) => void) | undefined;
      try {
        flow = await dial();
        let failure: Error | undefined;
        flow.on('error', (err) => {
          failure ??= err;
          log.debug({ client, reason: describe(err) }, 'flow failed');
        });
        await awaitServiceReady(flow);
        log.debug({ client }, 'connection tunnelled');
        ended = metrics.carry(socket);
        await splice(socket, flow);
        ended(failure ? ((failure as { code?: string }).code ?? 'error') : 'ok');
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (ended) ended(code ?? 'error');
        else metrics.refused(code ?? 'error');
        const hint = code === 'ERR_STREAM_LIMIT' ? ' (each connection is a flow of the one VC: raise --max-flows)' : '';
        log.error({ client, endpoint: endpoint.toString(), reason: describe(err), code }, `cannot reach ${endpoint}: ${describe(err)}${hint}`);
        socket.destroy();
        flow?.destroy();
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', (err) => reject(cannotListen(host, port, err)));
    server.listen(port, host);
  });
  server.on('error', (err) => log.warn({ reason: err.message }, 'failed to accept a local connection'));
  const bound = server.address();
  const address = bound !== null && typeof bound === 'object' ? `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}` : local;
  log.info({ local: address, endpoint: endpoint.toString() }, 'accepting local connections');
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      log.info({ signal, open: active.size }, 'shutting down');
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    // Only now: whoever waits for this line may signal at once, and a signal without a handler kills.
    announce(`${address}\n`);
  });
  server.close();
  for (const socket of active) socket.destroy();
}
