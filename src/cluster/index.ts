// ridproxy/cluster: proxies that act as one, on a NATS directory (docs/cluster.md).
export {
  Cluster,
  DEFAULT_CLUSTER_NAME,
  DEFAULT_DIAL_TIMEOUT,
  DEFAULT_LINK_IDLE_TIMEOUT,
  DEFAULT_LOOKUP_TIMEOUT,
  type ClusterDirectoryEvent,
  type ClusterDroppedEvent,
  type ClusterEvents,
  type ClusterOptions,
  type ClusterStats,
  type ClusterSupersededEvent,
} from './cluster.js';
export type { LinkEvent as ClusterLinkEvent } from './links.js';
