export * from './errors.js';
export { RoutingId } from './id/routing-id.js';
export { Identity, loadIdentity, saveIdentity } from './id/identity.js';
export { Endpoint, parseAddress } from './id/endpoint.js';
export { Proxy, type ProxyOptions, type ProxyServerReport, type ProxyStats, type ProxyStatusReport, type ReloadableProxyOptions } from './proxy/proxy.js';
export { queryProxyStatus, type StatusQueryOptions } from './proxy/status-client.js';
export type * from './proxy/events.js';
export {
  Manager,
  type AcceptOptions,
  type Authorize,
  type DialOptions,
  type ListenStatus,
  type ManagerEvents,
  type ManagerOptions,
  type ProxyListenOptions,
  type ProxyRegistration,
} from './manager/manager.js';
export { Flow, MAX_MESSAGE_SIZE } from './manager/flow.js';
export type { VcSession } from './manager/vc-session.js';
export { PersistentRegistration, backoffDelay, type BackoffOptions } from './manager/persistent-registration.js';
export type { PeerIdentity } from './secure/index.js';
