import type { PathName } from '../harness/args.js';
import type { Skip } from '../harness/results.js';
import type { Target } from '../lib/target.js';

/** One way from the client worker to a sink, ready to carry streams. */
export interface Route {
  path: PathName;
  target: Target;
  /**
   * The processes that carry the path's bytes between client and sink (and whatever they fork),
   * for CPU per byte; absent where they cannot be told apart from the client's or sink's own work.
   */
  relayPids?: () => number[];
}

/** The processes of a scenario's paths; close() kills every one of them. */
export interface Topology {
  routes: Route[];
  /** Paths that could not be started, and why. */
  skipped: Skip[];
  close(): void;
}

export const PATH_LABELS: Record<PathName, string> = {
  direct: 'direct TCP, client to sink (the limit)',
  relay: 'plain Node relay (net + pipe), 1 process',
  chain: 'plain Node relay chain, 2 processes in series',
  ssh: 'ssh -R (aes128-gcm@openssh.com) through a throwaway sshd on loopback: sshd -> ssh -> TCP sink',
  library: 'ridproxy library: dialing Manager -> Proxy -> accepting Manager, 3 processes (end-to-end encryption, the default)',
  'library-plain': 'the same with encryption: false on both Managers (no end-to-end encryption)',
  cli: 'ridproxy CLI: connect -> proxy start -> serve -> TCP sink',
};
