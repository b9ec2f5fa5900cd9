import { waitFor } from '../helpers.js';
import { freePort, runCli, type CliProcess } from './cli.js';

export interface WebProxy {
  proxy: CliProcess;
  /** The proxy's ridp:// endpoint, its first line. */
  endpoint: string;
  /** The port of its public HTTP ingress, on 127.0.0.1. */
  httpPort: number;
  domain: string;
}

/**
 * `proxy start` with a web ingress for `domain` on a free port of 127.0.0.1. The port is picked
 * before the start, since the URLs the proxy hands to servers name it.
 */
export async function startWebProxy(config: string, domain: string): Promise<WebProxy> {
  const httpPort = await freePort();
  const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--http', `127.0.0.1:${httpPort}`, '--domain', domain], { config });
  const endpoint = await proxy.firstLine;
  await waitFor(() => proxy.stderr().includes('HTTP ingress for'), 'the HTTP ingress to listen', 20_000);
  return { proxy, endpoint, httpPort, domain };
}

export interface WebServe {
  serve: CliProcess;
  endpoint: string;
  /** The URLs serve printed after its endpoint, one a line. */
  urls: string[];
}

/** `proxy serve --forward <port> --name <name>` registered on `web`, with the URLs it printed. */
export async function serveWeb(config: string, web: WebProxy, forwardPort: number, name: string): Promise<WebServe> {
  const serve = runCli(['serve', '--proxy', web.endpoint, '--forward', String(forwardPort), '--name', name], { config });
  const endpoint = await serve.firstLine;
  const mine = `.${web.domain}:${web.httpPort}/`;
  await waitFor(() => serve.stdout().includes(`http://${name}${mine}`), `serve to print its URL for ${name}`, 20_000);
  const urls = serve
    .stdout()
    .split('\n')
    .slice(1)
    .filter((line) => line.startsWith('http://'));
  return { serve, endpoint, urls };
}
