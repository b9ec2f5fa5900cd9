export { secureContextFor } from './certificate.js';
export { secureChannel, type PeerIdentity, type SecureChannel, type SecureChannelOptions } from './channel.js';
