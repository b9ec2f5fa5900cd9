/**
 * The long-path variant of the ridproxy paths (library and CLI): a delay relay on each of the two
 * hops to the proxy, the dialing side's and the accepting side's, each adding half the RTT, so
 * that end to end the round trip is the same as direct TCP's through its one delay relay.
 */
import { startDelay } from './baselines.js';

/** ridp://[<proxy rid>@]host:port[/<rid>] */
const ENDPOINT_ADDRESS = /^(ridp:\/\/(?:[0-9a-f]{32}@)?)(.+):(\d+)((?:\/[0-9a-f]{32})?)$/;

function parts(endpoint: string): RegExpExecArray {
  const match = ENDPOINT_ADDRESS.exec(endpoint.trim());
  if (!match) throw new Error(`not an endpoint: ${JSON.stringify(endpoint)}`);
  return match;
}

/** The port of an endpoint's address. */
export function endpointPort(endpoint: string): number {
  return Number(parts(endpoint)[3]);
}

/** The same endpoint (the same routing ids) reached at 127.0.0.1:port, e.g. through a delay relay in front of the proxy. */
export function viaPort(endpoint: string, port: number): string {
  const [, scheme, , , path] = parts(endpoint);
  return `${scheme}127.0.0.1:${port}${path}`;
}

export interface DelayedHops {
  /** Where the dialing side (client Manager, `connect`) reaches the proxy. */
  dialPort: number;
  /** Where the accepting side (sink Manager, `serve`) reaches the proxy. */
  acceptPort: number;
  kill(): void;
}

/** Two delay relays in front of the proxy at `proxyPort`, one per hop, each adding rttMs / 2 to the round trip. */
export async function startDelayedHops(proxyPort: number, rttMs: number): Promise<DelayedHops> {
  const accept = await startDelay('accept-hop delay', proxyPort, rttMs / 4);
  try {
    const dial = await startDelay('dial-hop delay', proxyPort, rttMs / 4);
    return {
      dialPort: dial.port,
      acceptPort: accept.port,
      kill: () => {
        dial.worker.kill();
        accept.worker.kill();
      },
    };
  } catch (err) {
    accept.worker.kill();
    throw err;
  }
}
