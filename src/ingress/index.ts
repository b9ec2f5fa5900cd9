/**
 * `ridproxy/ingress`: the web ingress a proxy can run beside its listener (`proxy start --http
 * --domain`, `--tls-passthrough`, `--tcp-ports`): host names for registered servers, the HTTP
 * listener and the blind TLS listener that route to them by name, public TCP ports, and the
 * registration hooks that compose them; and, for the serving side, `forwardFlows`, which carries
 * each flow to a local port as `serve --forward` does.
 */
export { IngressDialer } from './dialer.js';
export { HttpIngress, type HttpIngressOptions } from './http.js';
export { NameDirectory, namesFile } from './names.js';
export { checkHostname, hostnameProblem, routingIdLabel, routingIdOfLabel } from '../id/hostname.js';
export { readOrigin, writeOrigin, type FlowOrigin } from '../tunnel/protocol.js';
export { TlsPassthroughIngress, type TlsPassthroughOptions, type TlsRefusal } from './tls.js';
export { ClientHelloReader, DEFAULT_MAX_HELLO_BYTES, TlsAlert, alertRecord, parseClientHello, type HelloResult } from './sni.js';
export { PublicPorts, parsePortRange, DEFAULT_MAX_PORTS_PER_KEY, type FlowOpener, type PublicPortsOptions } from './ports.js';
export { composeRegistrationHooks } from '../proxy/registration-hooks.js';
export type { RegistrationHook, RegistrationVerdict } from '../proxy/options.js';
export { proxyHeader, parseSocketAddress, PROXY_PROTOCOL_VERSIONS, type ProxyProtocolVersion, type SocketAddress } from '../tunnel/proxy-protocol.js';
export { TlsTermination, type TlsCredentials } from '../tunnel/tls-termination.js';
// awaitServiceReady: what a dialer reads first from a flow forwardFlow carries (the local service's refusal, if any).
export { awaitServiceReady } from '../tunnel/protocol.js';
export { forwardFlow, forwardFlows, type ForwardOptions, type ForwardResult, type Forwarding } from '../tunnel/forward.js';
