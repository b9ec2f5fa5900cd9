import { Option, type Command } from 'commander';
import { parseAddress } from '../../id/endpoint.js';
import { defaultProxyIdentityPath, identityFrom } from '../identity-file.js';
import { DEFAULT_HANDSHAKE_TIMEOUT } from '../../hop/connection.js';
import {
  DEFAULT_ADDRESS_BUFFER_BUDGET,
  DEFAULT_BUFFER_BUDGET,
  DEFAULT_CONNECTION_BUFFER_BUDGET,
  DEFAULT_IDENTITY_BUFFER_BUDGET,
  DEFAULT_IPV6_PREFIX_LENGTH,
  DEFAULT_MAX_TOKEN_FAILURES,
  DEFAULT_VC_OPEN_TIMEOUT,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  DEFAULT_MAX_HANDSHAKES,
  DEFAULT_MAX_QUEUED_HANDSHAKES,
  DEFAULT_MAX_REGISTRATIONS,
  DEFAULT_MAX_VCS_PER_CONNECTION,
  Proxy,
} from '../../proxy/proxy.js';
import { DEFAULT_MAX_PAYLOAD } from '../../wire/index.js';
import { loadAllowList } from '../allow-list.js';
import { createLogger } from '../logger.js';
import { addCommonOptions, reloadLogLevel, type CommonOptions } from '../common.js';
import { positiveInteger, wholeNumber } from '../parse.js';
import { secretOption, type Secret } from '../secrets.js';
import { describe } from '../describe.js';
import { exposeMetrics, proxyMetrics } from '../metrics.js';
import { DEFAULT_REFUSAL_LOG_INTERVAL, logProxyEvents } from '../proxy-log.js';
import { webIngress, startWebIngress, type StartedWebIngress, type WebIngressOptions } from '../web-ingress.js';
import { DEFAULT_MAX_PORTS_PER_KEY } from '../../ingress/ports.js';
import { checkClusterOptions, clusterToken, joinCluster, type ClusterCliOptions, type JoinedCluster } from '../cluster.js';

const registrationToken = secretOption('token', 'registration', 'require this token from servers that register (`proxy serve --token`)');
const dialToken = secretOption('dial-token', 'dial', 'require this token from clients that open VCs (`proxy connect --dial-token`)');
const statusToken = secretOption('status-token', 'status', 'answer `proxy status --token` with this token; with another token set and no status token, status is off');

interface StartOptions extends CommonOptions, WebIngressOptions, ClusterCliOptions {
  listen: string;
  identity?: string;
  allowFile?: string;
  drainTimeout: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  maxHandshakes: number;
  maxQueuedHandshakes: number;
  ipv6Prefix: number;
  maxTokenFailures: number;
  maxRegistrations: number;
  maxVcsPerConnection: number;
  bufferBudget: number;
  connectionBufferBudget: number;
  identityBufferBudget: number;
  addressBufferBudget: number;
  vcOpenTimeout: number;
  handshakeTimeout: number;
  idleTimeout: number;
  maxFrameSize: number;
  metrics?: string;
  metricsPerRid?: boolean;
  refusalLogInterval: number;
}

export function registerStart(program: Command): void {
  const command = program
    .command('start')
    .description('Run a proxy. Prints its endpoint as the first line of stdout, then serves until SIGINT or SIGTERM. SIGHUP reloads the log level (from --config), --allow-file, the token files and variables, --names-file and the --https certificate, keeping every connection.')
    .option('--listen <host:port>', 'address to accept connections on (use 0.0.0.0:8100 to accept from other machines)', '127.0.0.1:8100')
    .option('--identity <file>', `the proxy's identity; its routing ID is part of the endpoint (mode 0600: a file group or others may access is refused; default: ${defaultProxyIdentityPath()}, created on first use)`);
  for (const secret of [registrationToken, dialToken, statusToken]) secret.addTo(command);
  command
    .option('--allow-file <file>', 'only routing IDs listed in this file (one per line, # comments) may register; read again on SIGHUP')
    .addOption(new Option('--drain-timeout <ms>', 'on SIGINT/SIGTERM, how long open VCs may finish before they are cut (0: at once)').argParser(wholeNumber).default(5000))
    .addOption(limit('--max-connections <n>', 'hop connections held at once, handshaking ones included', DEFAULT_MAX_CONNECTIONS))
    .addOption(limit('--max-connections-per-address <n>', 'hop connections from one source address (IPv6: one --ipv6-prefix)', DEFAULT_MAX_CONNECTIONS_PER_ADDRESS))
    .addOption(
      limit(
        '--max-handshakes <n>',
        'hop handshakes worked on at once (about 1 ms of CPU each); more new connections wait their turn, oldest first, so a reconnect storm is answered a batch at a time instead of all timing out together. --handshake-timeout starts when a connection\'s turn comes',
        DEFAULT_MAX_HANDSHAKES,
      ),
    )
    .addOption(
      limit(
        '--max-queued-handshakes <n>',
        'connections that may wait for a --max-handshakes slot; more are closed at once (refused, ERR_LIMIT), and one that waited --handshake-timeout ms is closed (ERR_TIMEOUT); 0: none wait',
        DEFAULT_MAX_QUEUED_HANDSHAKES,
        { zero: true },
      ),
    )
    .addOption(limit('--ipv6-prefix <bits>', 'IPv6 sources count as one address per prefix of this length, for the per-address limits', DEFAULT_IPV6_PREFIX_LENGTH))
    .addOption(limit('--max-token-failures <n>', 'wrong tokens from one address within a minute before it is refused for the rest of that minute', DEFAULT_MAX_TOKEN_FAILURES))
    .addOption(limit('--max-registrations <n>', 'registered servers', DEFAULT_MAX_REGISTRATIONS))
    .addOption(limit('--max-vcs-per-connection <n>', 'open VCs one hop connection may have opened', DEFAULT_MAX_VCS_PER_CONNECTION))
    .addOption(limit('--buffer-budget <bytes>', 'VC window bytes the proxy may commit in total; new VCs are refused beyond it', DEFAULT_BUFFER_BUDGET))
    .addOption(limit('--connection-buffer-budget <bytes>', 'VC window bytes the proxy may commit to the VCs one connection opens', DEFAULT_CONNECTION_BUFFER_BUDGET))
    .addOption(limit('--identity-buffer-budget <bytes>', 'VC window bytes the proxy may commit to the VCs one routing id opens, over all its connections', DEFAULT_IDENTITY_BUFFER_BUDGET))
    .addOption(limit('--address-buffer-budget <bytes>', 'VC window bytes the proxy may commit to the VCs opened from one source address', DEFAULT_ADDRESS_BUFFER_BUDGET))
    .addOption(limit('--vc-open-timeout <ms>', 'time a server has to answer a new VC before it is refused and its reservation released', DEFAULT_VC_OPEN_TIMEOUT))
    .addOption(limit('--handshake-timeout <ms>', 'time a new connection has to prove its identity', DEFAULT_HANDSHAKE_TIMEOUT))
    .addOption(limit('--idle-timeout <ms>', 'time a connection with no VCs and no registration may stay open (0: forever)', DEFAULT_IDLE_TIMEOUT, { zero: true }))
    .addOption(limit('--max-frame-size <bytes>', 'largest frame payload accepted', DEFAULT_MAX_PAYLOAD))
    .option('--metrics <[host:]port>', 'serve Prometheus metrics at http://<host:port>/metrics and a health check at /healthz (200 "ok" while the proxy accepts connections); host defaults to 127.0.0.1, so --metrics 9464 is local only')
    .option('--http <[host:]port>', 'accept public HTTP/1.1 here (host defaults to 0.0.0.0) and route each request by its Host to the server registered under that name in --domain; WebSocket and other upgrades pass through')
    .option('--domain <domain>', 'the domain the web ingress (--http, --https, --tls-passthrough; one of them is needed) names servers under: each server is <base32 of its routing id>.<domain>, and `serve --name app` asks for app.<domain>')
    .option('--names-file <file>', 'where the names servers asked for are reserved, one key each, across restarts (default: names.json next to the proxy identity); read again on SIGHUP')
    .option(
      '--https <[host:]port>',
      'accept public HTTPS here (host defaults to 0.0.0.0), terminating TLS with --tls-cert/--tls-key, and route each request by its Host as --http does: the proxy sees the plaintext (use --tls-passthrough if it must not)',
    )
    .option('--tls-cert <file>', 'with --https: the certificate chain (PEM), a wildcard for *.<domain>; read again on SIGHUP')
    .option('--tls-key <file>', 'with --https: the certificate\'s private key (PEM); read again on SIGHUP')
    .option(
      '--tls-passthrough <[host:]port>',
      'accept public TLS here (host defaults to 0.0.0.0), read only the server name (SNI) of each ClientHello, and pass the whole connection to the server registered under that name in --domain, which terminates TLS itself (`serve --tls-cert`, or its local service): the proxy holds no certificate and sees no plaintext',
    )
    .option('--tcp-ports <[host:]from-to>', 'let servers ask for public TCP ports in this range (`serve --public-port`), listened on at host (default 0.0.0.0) while their registration lives; each connection becomes a flow to the server')
    .addOption(limit('--max-ports-per-key <n>', 'public TCP ports one server key may hold at once, with --tcp-ports', DEFAULT_MAX_PORTS_PER_KEY))
    .option('--trust-forwarded', 'keep the X-Forwarded-* and Forwarded headers requests arrive with (only behind a load balancer you trust); by default the proxy replaces them')
    .option('--cluster <nats-url>', 'join a cluster of proxies whose directory is this NATS server (nats://host:port; several, comma-separated, for a NATS cluster): servers registered on any member are reached through every one (docs/cluster.md)')
    .option('--advertise <host:port>', 'with --cluster: where the other proxies reach this one (default: the --listen address, which must then not be a wildcard)')
    .option('--cluster-peers-file <file>', 'with --cluster (required): the routing ids of the cluster\'s proxies, one per line (# comments; this proxy\'s own may be listed), the only ones allowed to forward VCs here and be forwarded to; read again on SIGHUP')
    .option('--cluster-name <name>', 'with --cluster: proxies on one NATS with the same name form one cluster (letters, digits, - and _; default ridproxy)')
    .option('--metrics-per-rid', 'add ridproxy_server_bytes_total{routing_id, direction}, the bytes each registered server sent and received: one series per routing id, so off by default')
    .addOption(
      limit(
        '--refusal-log-interval <ms>',
        'refusals of one kind and reason from one address are logged once, then counted: one line per interval says how many more came',
        DEFAULT_REFUSAL_LOG_INTERVAL,
      ),
    )
    .addHelpText('after', '\nExample:\n  $ npx proxy start --listen 127.0.0.1:8100\n  ridp://127.0.0.1:8100/9a0c...   <- give this to `proxy serve --proxy`');
  clusterToken.addTo(command);
  addCommonOptions(command).action(async (options: StartOptions, self: Command) => {
    let { token, dial, status, allowList } = await admissionSettings(options);
    const { log, announce } = createLogger({ level: options.logLevel, pretty: options.pretty });
    const { host, port } = parseAddress(options.listen, '127.0.0.1');
    const metricsAddress = options.metrics === undefined ? undefined : parseAddress(options.metrics, '127.0.0.1');
    checkClusterOptions(options);
    const identityPath = options.identity ?? defaultProxyIdentityPath();
    const web = webIngress(options, identityPath);
    const names = web?.names;
    const { identity, created } = await identityFrom(identityPath, options.identity === undefined);
    if (created) log.info({ file: identityPath, routingId: identity.routingId.toString() }, 'created a new proxy identity');
    const proxy = await Proxy.listen({
      host,
      port,
      identity,
      registrationToken: token?.value,
      dialToken: dial?.value,
      statusToken: status?.value,
      registrationAllowList: allowList,
      maxConnections: options.maxConnections,
      maxConnectionsPerAddress: options.maxConnectionsPerAddress,
      maxHandshakes: options.maxHandshakes,
      maxQueuedHandshakes: options.maxQueuedHandshakes,
      ipv6PrefixLength: options.ipv6Prefix,
      maxTokenFailures: options.maxTokenFailures,
      maxRegistrations: options.maxRegistrations,
      maxVcsPerConnection: options.maxVcsPerConnection,
      bufferBudget: options.bufferBudget,
      connectionBufferBudget: options.connectionBufferBudget,
      identityBufferBudget: options.identityBufferBudget,
      addressBufferBudget: options.addressBufferBudget,
      vcOpenTimeout: options.vcOpenTimeout,
      handshakeTimeout: options.handshakeTimeout,
      idleTimeout: options.idleTimeout,
      maxPayload: options.maxFrameSize,
      registrationHook: web?.hook,
    });
    const refusals = logProxyEvents(proxy, log, options.refusalLogInterval);
    let stopMetrics: (() => void) | undefined;
    if (metricsAddress !== undefined) {
      const metrics = proxyMetrics(proxy, { bufferBudget: options.bufferBudget, perRoutingId: options.metricsPerRid });
      try {
        stopMetrics = await exposeMetrics(metricsAddress, metrics.scrape, metrics.registry.contentType, () => proxy.listening, log);
      } catch (err) {
        await proxy.close();
        throw err;
      }
    } else if (options.metricsPerRid) {
      log.warn('--metrics-per-rid does nothing without --metrics');
    }
    let ingress: StartedWebIngress | undefined;
    if (web !== undefined) {
      try {
        ingress = await startWebIngress(proxy, web, options, () => dial?.value, log);
      } catch (err) {
        stopMetrics?.();
        await proxy.close();
        throw err;
      }
    }
    let cluster: JoinedCluster | undefined;
    try {
      cluster = await joinCluster(proxy, options, log);
    } catch (err) {
      await ingress?.stop();
      stopMetrics?.();
      await proxy.close();
      throw err;
    }
    const described = () => ({
      token: token !== undefined,
      tokenSource: token?.source,
      dialToken: dial !== undefined,
      dialTokenSource: dial?.source,
      statusToken: status !== undefined,
      statusTokenSource: status?.source,
      allowList: allowList?.size,
    });
    log.info({ endpoint: proxy.endpoint, routingId: proxy.routingId.toString(), ...described() }, 'proxy listening');

    // SIGHUP reads the log level, the allow-list and the token files (and variables) again, as
    // they are now; a bad file keeps the settings in force. Connections, registrations and VCs are kept.
    let reloading = Promise.resolve();
    const reload = (): void => {
      reloading = reloading.then(async () => {
        reloadLogLevel(self, log);
        let applyPeers: (() => void) | undefined;
        try {
          names?.reload();
          applyPeers = await cluster?.reload();
          ({ token, dial, status, allowList } = await admissionSettings(options));
        } catch (err) {
          log.error({ reason: describe(err) }, 'SIGHUP: reload failed; the previous allow-list and tokens stay in force');
          return;
        }
        proxy.reload({ registrationToken: token?.value, dialToken: dial?.value, statusToken: status?.value, registrationAllowList: allowList });
        applyPeers?.();
        log.info({ signal: 'SIGHUP', ...described() }, 'reloaded the allow-list and tokens');
        if (options.https !== undefined) {
          await ingress?.reloadCertificate().then(
            () => log.info({ signal: 'SIGHUP', cert: options.tlsCert }, 'reloaded the --https certificate'),
            (err) => log.error({ signal: 'SIGHUP', reason: describe(err) }, 'SIGHUP: cannot reload the --https certificate; the previous one stays in use'),
          );
        }
      });
    };
    process.on('SIGHUP', reload);

    await new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        process.off('SIGHUP', reload);
        const stats = proxy.stats();
        log.info({ signal, drainTimeoutMs: options.drainTimeout, connections: stats.connections, vcs: stats.vcs }, 'shutting down: telling connected processes the proxy is going away');
        // The cluster first: other proxies stop sending VCs here while this one drains.
        void Promise.all([ingress?.stop(), cluster?.close(), proxy.close({ drainTimeout: options.drainTimeout })]).then(() => {
          refusals.flush();
          stopMetrics?.();
          log.info({ bytesForwarded: proxy.stats().bytesForwarded }, 'proxy stopped');
          resolve();
        });
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      // Only now: whoever waits for this line may signal at once, and a signal without a handler kills.
      announce(`${proxy.endpoint}\n`);
    });
  });
}

/** The tokens and the allow-list, read from their flags, files and variables as they are now. */
async function admissionSettings(options: StartOptions): Promise<{ token?: Secret; dial?: Secret; status?: Secret; allowList?: Set<string> }> {
  return {
    token: await registrationToken.resolve(options),
    dial: await dialToken.resolve(options),
    status: await statusToken.resolve(options),
    allowList: options.allowFile ? await loadAllowList(options.allowFile) : undefined,
  };
}

/** A numeric option; 0 is refused unless the option gives it a meaning (`zero`). */
function limit(flags: string, description: string, defaultValue: number, { zero = false } = {}): Option {
  return new Option(flags, description).argParser(zero ? wholeNumber : positiveInteger).default(defaultValue);
}
