export { secureChannel, type PeerIdentity, type SecureChannel, type SecureChannelOptions } from './channel.js';
