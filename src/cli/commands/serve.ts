import { access } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { ConnectionClosedError, InvalidArgumentError, RegistrationError, Reason } from '../../errors.js';
import { parseAddress, Endpoint, formatAddress } from '../../id/endpoint.js';
import { Manager } from '../../manager/manager.js';
import { PersistentRegistration } from '../../manager/persistent-registration.js';
import type { Flow } from '../../manager/flow.js';
import { addTunnelOptions, reloadLogLevel, type TunnelOptions } from '../common.js';
import { defaultIdentityPath, defaultServeIdentityPath, defaultServeIdentityPattern, identityFrom } from '../identity-file.js';
import { createLogger } from '../logger.js';
import { describe } from '../describe.js';
import { exposeMetrics, TunnelMetrics } from '../metrics.js';
import { secretOption } from '../secrets.js';
import { forwardFlows, type ForwardOptions, type ForwardResult } from '../../tunnel/forward.js';
import { PROXY_PROTOCOL_VERSIONS, type ProxyProtocolVersion } from '../../tunnel/proxy-protocol.js';
import { TlsTermination } from '../../tunnel/tls-termination.js';
import { publicPortList } from '../parse.js';

const token = secretOption('token', 'registration', "the proxy's registration token, if it requires one (sent only as a MAC bound to the connection)");

interface ServeOptions extends TunnelOptions {
  proxy: string[];
  forward: string;
  name?: string;
  publicPort?: number[];
  proxyProtocol?: ProxyProtocolVersion;
  tlsCert?: string;
  tlsKey?: string;
  json?: boolean;
  identity?: string;
  insecureAnyProxy?: boolean;
}

export function registerServe(program: Command): void {
  const command = program
    .command('serve')
    .description(
      'Export a local TCP service through one or more proxies. Prints the endpoint clients use as the first line of stdout (naming every proxy); re-registers on each by itself within about 2 s whenever it comes back. Exits with status 1 if another process registers the same identity on a proxy. SIGHUP reloads the log level from --config.',
    )
    .requiredOption(
      '--proxy <endpoint>',
      'required: the endpoint `proxy start` printed (ridp://host:port/<rid>); the proxy must prove that routing id before anything is sent (a bare host:port needs --insecure-any-proxy). Repeat it to register on several proxies: clients then fail over between them',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .requiredOption('--forward <[host:]port>', 'required: the local service each incoming flow is connected to (host defaults to 127.0.0.1: --forward 3000 is 127.0.0.1:3000)')
    .option(
      '--identity <file>',
      `this server's identity (mode 0600: a file group or others may access is refused); its routing ID is the address clients dial. Each serve needs its own: of two on one identity, the one displaced exits (default: ${defaultServeIdentityPattern()}, one per --forward address, created on first use)`,
    )
    .option('--insecure-any-proxy', 'accept whatever process answers at a --proxy host:port that names no routing id (its key is not checked: an impostor could take over, and attack a token offline)')
    .option('--name <name>', "on a proxy with web ingress, also be reachable as <name>.<its domain>: the proxy reserves the name for this identity's key (a DNS label: a-z, 0-9, -)")
    .option(
      '--public-port <port>',
      'on a proxy with public TCP ports (`start --tcp-ports`), also listen on this port of the proxy (0: any free one in its range; repeat or comma-separate for several) and carry each connection here; prints tcp://<proxy host>:<port>. Exits 1 if a proxy refuses (outside its range, over its per-key cap, in use)',
      publicPortList,
    )
    .addOption(
      new Option(
        '--proxy-protocol <version>',
        "start every connection to the local service with a PROXY protocol header (haproxy's v1 text or v2 binary) naming the public client's address for connections from a proxy's ingress (PROXY UNKNOWN / LOCAL for the others)",
      ).choices(PROXY_PROTOCOL_VERSIONS),
    )
    .option('--tls-cert <file>', "with --tls-key: terminate TLS here for connections from a proxy's --tls-passthrough ingress (PEM certificate chain for <name>.<domain>) and forward plaintext; without them the TLS bytes go to the local service as they came. Read again on SIGHUP")
    .option('--tls-key <file>', 'the PEM private key of --tls-cert')
    .option('--json', 'print events as JSON lines on stdout instead of the endpoint, URL and tcp:// lines: registered (endpoint, urls, tcp), reconnecting, stopped')
    .addHelpText('after', '\nExample:\n  $ npx proxy serve --proxy ridp://203.0.113.7:8100/9a0c... --forward 127.0.0.1:3000\n  ridp://9a0c...@203.0.113.7:8100/4f1c...   <- give this to `proxy connect`');
  addTunnelOptions(token.addTo(command), 'while registered on the proxy, 503 while reconnecting').action(async (options: ServeOptions, self: Command) => {
    const registrationToken = await token.resolve(options);
    const { log, announce } = createLogger({ level: options.logLevel, pretty: options.pretty });
    const proxies = options.proxy.map((text) => Endpoint.parse(text));
    const forward = parseAddress(options.forward, '127.0.0.1');
    const metricsAddress = options.metrics === undefined ? undefined : parseAddress(options.metrics, '127.0.0.1');
    const identityPath = options.identity ?? defaultServeIdentityPath(forward.host, forward.port);
    if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) throw new InvalidArgumentError('ERR_INVALID_OPTION', '--tls-cert and --tls-key go together');
    const tls = options.tlsCert === undefined ? undefined : await TlsTermination.load(options.tlsCert, options.tlsKey!);
    const { identity, created } = await identityFrom(identityPath, options.identity === undefined);
    if (created) {
      log.info({ file: identityPath, routingId: identity.routingId.toString() }, 'created a new identity');
      // Until 0.1.0 every serve used identity.pem by default; say where the old endpoint's key is.
      if (await exists(defaultIdentityPath())) {
        log.warn({ file: identityPath, previous: defaultIdentityPath() }, 'serve now keeps one identity per --forward address; pass --identity to keep the endpoint of the previous one');
      }
    }
    const manager = new Manager({ identity, maxFlowsPerVc: options.maxFlows });
    manager.on('vcError', (err, { claimedRoutingId, remoteRoutingId }) =>
      log.warn({ peer: remoteRoutingId, claimedPeer: claimedRoutingId, reason: describe(err), code: err.code }, 'refused a VC'),
    );
    // One registration per proxy, each re-registering on its own; every proxy must take the first one.
    let registrations: PersistentRegistration[];
    try {
      registrations = await Promise.all(
        proxies.map((proxy, i) =>
          PersistentRegistration.start(manager, `proxy-${i}`, proxy, {
            token: registrationToken?.value,
            allowUnpinnedProxy: options.insecureAnyProxy,
            hostname: options.name,
            publicPorts: options.publicPort,
          }),
        ),
      );
      const asked = options.publicPort?.length ?? 0;
      // A proxy without public ports ignores the request (5.5): that is a refusal for this command.
      const short = registrations.findIndex((r) => (r.ingress?.tcp.length ?? 0) < asked);
      if (short >= 0) {
        for (const registration of registrations) registration.close();
        throw new RegistrationError(Reason.Refused, `proxy ${proxies[short]!.address} offers no public TCP ports (it needs \`proxy start --tcp-ports\`)`);
      }
    } catch (err) {
      await manager.close();
      throw err;
    }
    // Stable across reconnects: each proxy's address and key, and this server's routing id.
    const endpoint = Endpoint.withRoutes(registrations.map((r) => Endpoint.parse(r.endpoint!))).toString();
    const currentUrls = (): string[] => [...new Set(registrations.flatMap((r) => r.ingress?.urls ?? []))];
    const urls = currentUrls();
    // Each proxy says which ports it listens on; its host is the one this serve reached it at.
    const publicAddresses = (): string[] =>
      registrations.flatMap((r, i) => (r.ingress?.tcp ?? []).map((bound) => `tcp://${formatAddress(proxies[i]!.host, Number(/:(\d+)$/.exec(bound)?.[1]))}`));
    log.info({ endpoint, proxies: proxies.map(String), forward: `${forward.host}:${forward.port}`, urls, tcp: publicAddresses() }, proxies.length === 1 ? 'registered on the proxy' : `registered on ${proxies.length} proxies`);
    if (options.name !== undefined && urls.length === 0) log.warn({ name: options.name }, 'no proxy has web ingress: --name has no effect');
    // Each proxy, which this serve pinned, names the key its web ingress calls with.
    const fromIngress = (peer: string): boolean => registrations.some((r) => r.ingress?.routingId === peer);
    const event = (fields: Record<string, unknown>): void => {
      if (options.json) process.stdout.write(`${JSON.stringify(fields)}\n`);
    };
    const metrics = new TunnelMetrics();
    const registered = (): number => registrations.filter((r) => r.isRegistered).length;
    metrics.gauge('ridproxy_serve_registered', 'Proxies this serve is registered on now (0 while reconnecting to every one).', registered);
    const registrationsLost = metrics.counter('ridproxy_serve_registrations_lost_total', 'Times a registration on a proxy was lost (each followed by reconnecting).');
    let stopMetrics: (() => void) | undefined;
    if (metricsAddress !== undefined) {
      try {
        stopMetrics = await exposeMetrics(metricsAddress, () => metrics.scrape(), metrics.registry.contentType, () => registered() > 0, log);
      } catch (err) {
        for (const registration of registrations) registration.close();
        await manager.close();
        throw err;
      }
    }
    registrations.forEach((registration, i) => {
      const proxy = proxies[i].toString();
      registration.on('lost', (err) => {
        registrationsLost.inc();
        event({ event: 'reconnecting', proxy, reason: describe(err), code: (err as { code?: string }).code });
        log.warn({ proxy, reason: describe(err), code: (err as { code?: string }).code }, 'lost the proxy registration; reconnecting');
      });
      registration.on('retrying', ({ attempt, delay, error }) => log.info({ proxy, attempt, retryInMs: delay, reason: describe(error) }, 'registration failed; will retry'));
      registration.on('registered', ({ attempt }) => {
        event({ event: 'registered', proxy, endpoint, urls: currentUrls(), tcp: publicAddresses() });
        log.info({ proxy, endpoint, attempts: attempt, tcp: publicAddresses() }, 're-registered on the proxy');
        if ((options.publicPort?.length ?? 0) > (registration.ingress?.tcp.length ?? 0)) log.warn({ proxy, asked: options.publicPort }, 'the proxy gave fewer public ports than asked for this time');
      });
      registration.on('conflict', (err) => log.error({ proxy, reason: describe(err), code: err.code }, 'another process registered this identity; stopping'));
    });

    // Each outcome logged and counted here; what happens to the bytes is the library's forwardFlow.
    const forwardOptions: ForwardOptions = {
      host: forward.host,
      port: forward.port,
      proxyProtocol: options.proxyProtocol,
      tls,
      fromIngress,
      // A flow can fail at any point (the client vanished, the proxy went away); that is logged, never fatal.
      onFlowError: (err, flow) => log.debug({ peer: flow.conn.remoteRoutingId.toString(), reason: describe(err) }, 'flow failed'),
      onOrigin: (origin, flow) => log.debug({ peer: flow.conn.remoteRoutingId.toString(), via: origin.via, client: origin.client, host: origin.host }, 'flow from the web ingress'),
      onConnected: (socket, flow) => {
        log.debug({ peer: flow.conn.remoteRoutingId.toString() }, 'flow connected to the local service');
        carried.set(flow, metrics.carry(socket));
      },
    };
    const carried = new WeakMap<Flow, (outcome: string) => void>();
    const flowEnded = (result: ForwardResult, flow: Flow): void => {
      const { peer } = result;
      if (result.outcome === 'refused') {
        metrics.refused(result.code);
        log.warn({ peer, forward: `${forward.host}:${forward.port}`, reason: describe(result.error) }, 'local service refused a flow');
        return;
      }
      const failure = result.error;
      carried.get(flow)?.(failure ? ((failure as { code?: string }).code ?? 'error') : 'ok');
      log.info(
        { event: 'flow', peer, bytesToPeer: result.bytesToPeer, bytesFromPeer: result.bytesFromPeer, durationMs: result.durationMs, ...(failure && { reason: describe(failure) }) },
        failure ? 'flow failed' : 'flow finished',
      );
    };

    let onSignal!: (signal: NodeJS.Signals) => void;
    const stop = new Promise<void>((resolve) => {
      onSignal = (signal) => {
        log.info({ signal }, 'shutting down');
        resolve();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
    });
    const reload = (): void => {
      reloadLogLevel(self, log);
      tls?.reload().then(
        () => log.info({ signal: 'SIGHUP', cert: options.tlsCert }, 'reloaded the TLS certificate'),
        (err) => log.error({ signal: 'SIGHUP', reason: describe(err) }, 'SIGHUP: cannot reload the TLS certificate; the previous one stays in use'),
      );
    };
    process.on('SIGHUP', reload);
    // Only now: whoever waits for this line may signal at once, and a signal without a handler kills.
    announce(
      options.json ? `${JSON.stringify({ event: 'registered', endpoint, urls, tcp: publicAddresses() })}\n` : `${[endpoint, ...urls, ...publicAddresses()].join('\n')}\n`,
    );
    const forwarding = forwardFlows(manager, { ...forwardOptions, onResult: flowEnded });
    // A conflict on any proxy stops this serve: the other process with its key would be displaced there forever.
    const conflicts = registrations.map((r) => r.done.then((conflict) => conflict ?? new Promise<never>(() => undefined)));
    const conflict = await Promise.race([stop.then(() => undefined), ...conflicts]);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', reload);
    for (const registration of registrations) registration.close();
    stopMetrics?.();
    // After a conflict the proxy has dropped the connection, and with it every VC: nothing to drain.
    await manager.close(conflict ? { drainTimeout: 0 } : undefined);
    await forwarding.done;
    event({ event: 'stopped', ...(conflict && { reason: conflict.message, code: conflict.code }) });
    if (conflict) throw new ConnectionClosedError(conflict.reason, `${conflict.message}; give each serve its own --identity`);
  });
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
