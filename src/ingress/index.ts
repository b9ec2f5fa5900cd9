/**
 * `ridproxy/ingress`: the web ingress a proxy can run beside its listener (`proxy start --http
 * --domain`): host names for registered servers, and the HTTP listener that routes to them.
 */
export { IngressDialer } from './dialer.js';
export { HttpIngress, type HttpIngressOptions } from './http.js';
export { NameDirectory, namesFile } from './names.js';
export { checkHostname, hostnameProblem, routingIdLabel, routingIdOfLabel } from '../id/hostname.js';
export { readOrigin, writeOrigin, type FlowOrigin } from '../tunnel/protocol.js';
