import { InvalidArgumentError } from '../errors.js';
import { formatAddress } from '../id/endpoint.js';
import type { Proxy } from '../proxy/proxy.js';
import { loadAllowList } from './allow-list.js';
import type { Logger } from './logger.js';
import { secretOption } from './secrets.js';

/** `--cluster-token`, `--cluster-token-file`, $RIDPROXY_CLUSTER_TOKEN: what the NATS server asks of its clients (nats-server --auth). */
export const clusterToken = secretOption('cluster-token', 'cluster', 'with --cluster: the NATS server\'s authorization token (nats-server --auth), which every proxy of the cluster presents');

export interface ClusterCliOptions {
  cluster?: string;
  advertise?: string;
  clusterPeersFile?: string;
  clusterName?: string;
  clusterToken?: string;
  clusterTokenFile?: string;
}

/** What `start` does with its cluster: read the peers file again (SIGHUP), and leave it (shutdown). */
export interface JoinedCluster {
  /** Reads the peers file again; the returned function applies it (so that a failed reload of anything else applies nothing). */
  reload(): Promise<() => void>;
  close(): Promise<void>;
  stats(): { connected: boolean };
}

/** Seconds over which dropped directory messages are summed into one log line: a rogue publisher must not flood the log. */
const DROPPED_LOG_INTERVAL = 10_000;

/** Checks the cluster flags go together, before anything listens. */
export function checkClusterOptions(options: ClusterCliOptions): void {
  if (options.cluster === undefined) {
    for (const flag of ['advertise', 'clusterPeersFile', 'clusterName', 'clusterToken', 'clusterTokenFile'] as const) {
      if (options[flag] !== undefined) throw new InvalidArgumentError('ERR_INVALID_OPTION', `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --cluster`);
    }
    return;
  }
  if (options.clusterPeersFile === undefined) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', '--cluster needs --cluster-peers-file: the routing ids of the proxies allowed to forward VCs to this one and be forwarded to');
  }
}

/**
 * `start --cluster`: joins the proxy to the cluster on NATS and logs what the cluster reports.
 * The cluster code (and the NATS client) is loaded only then: without --cluster nothing of it runs.
 */
export async function joinCluster(proxy: Proxy, options: ClusterCliOptions, log: Logger): Promise<JoinedCluster | undefined> {
  if (options.cluster === undefined) return undefined;
  const file = options.clusterPeersFile!;
  const members = await loadAllowList(file, 'cluster peers');
  const token = await clusterToken.resolve(options);
  const { Cluster } = await import('../cluster/index.js');
  const cluster = Cluster.join(proxy, {
    token: token?.value,
    servers: options.cluster.split(',').map((url) => url.trim()).filter((url) => url !== ''),
    members,
    advertise: options.advertise,
    name: options.clusterName,
  });
  cluster.on('directory', (event) => (event.state === 'connected' ? log.info : log.warn).call(log, { event: 'clusterDirectory', ...event }, event.detail));
  cluster.on('superseded', (event) => log.info({ event: 'clusterSuperseded', ...event }, `routing id ${event.routingId} registered on cluster proxy ${event.proxy}: its registration here ends`));
  cluster.on('link', (event) => {
    const line = { event: 'clusterLink', ...event };
    if (event.state === 'failed') log.warn(line, `cannot reach cluster proxy ${event.proxy} at ${event.address}: ${event.reason}`);
    else log.info(line, `link to cluster proxy ${event.proxy} at ${event.address} ${event.state}`);
  });
  let dropped = 0;
  let droppedTimer: NodeJS.Timeout | undefined;
  cluster.on('dropped', (event) => {
    if (droppedTimer === undefined) {
      log.warn({ event: 'clusterDropped', ...event }, `dropped a directory message for ${event.routingId}: ${event.reason}`);
      droppedTimer = setTimeout(() => {
        droppedTimer = undefined;
        if (dropped > 0) log.warn({ event: 'clusterDropped', suppressed: dropped }, `${dropped} more directory messages dropped in the last ${DROPPED_LOG_INTERVAL / 1000} s`);
        dropped = 0;
      }, DROPPED_LOG_INTERVAL);
      droppedTimer.unref();
    } else {
      dropped++;
    }
  });
  log.info({ cluster: cluster.name, nats: cluster.servers, clusterTokenSource: token?.source, advertise: formatAddress(cluster.advertise.host, cluster.advertise.port), peers: members.size }, 'joining the cluster');
  return {
    reload: async () => {
      const next = await loadAllowList(file, 'cluster peers');
      return () => cluster.setMembers(next);
    },
    close: async () => {
      if (droppedTimer !== undefined) clearTimeout(droppedTimer);
      await cluster.close();
    },
    stats: () => cluster.stats(),
  };
}
