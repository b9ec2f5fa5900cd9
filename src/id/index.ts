export { RoutingId } from './routing-id.js';
export { Identity, loadIdentity, publicKeyFromRaw, saveIdentity, type IdentityJson } from './identity.js';
export { Endpoint, parseAddress } from './endpoint.js';
