import { Option, type Command } from 'commander';
import { UnreachableError } from '../../errors.js';
import { parseAddress } from '../../id/endpoint.js';
import { defaultProxyIdentityPath, identityFrom } from '../identity-file.js';
import { Proxy } from '../../proxy/proxy.js';
import { createLogger } from '../logger.js';
import { addCommonOptions, type CommonOptions } from '../common.js';
import { positiveInteger } from '../parse.js';

interface StartOptions extends CommonOptions {
  listen: string;
  identity?: string;
  token?: string;
  drainTimeout: number;
}

export function registerStart(program: Command): void {
  const command = program
    .command('start')
    .description('Run a proxy. Prints its endpoint as the first line of stdout, then serves until SIGINT or SIGTERM.')
    .option('--listen <host:port>', 'address to accept connections on (use 0.0.0.0:8100 to accept from other machines)', '127.0.0.1:8100')
    .option('--identity <file>', `the proxy's identity; its routing ID is part of the endpoint (default: ${defaultProxyIdentityPath()}, created on first use)`)
    .option('--token <secret>', 'require this token from servers that register, and from `proxy status`')
    .addOption(new Option('--drain-timeout <ms>', 'on SIGINT/SIGTERM, how long open VCs may finish before they are cut').argParser(positiveInteger).default(5000))
    .addHelpText('after', '\nExample:\n  $ npx proxy start --listen 127.0.0.1:8100\n  ridp://127.0.0.1:8100/9a0c...   <- give this to `proxy serve --proxy`');
  addCommonOptions(command).action(async (options: StartOptions) => {
    const log = createLogger({ level: options.logLevel, pretty: options.pretty });
    const { host, port } = parseAddress(options.listen, '127.0.0.1');
    const identityPath = options.identity ?? defaultProxyIdentityPath();
    const { identity, created } = await identityFrom(identityPath, options.identity === undefined);
    if (created) log.info({ file: identityPath, routingId: identity.routingId.toString() }, 'created a new proxy identity');
    let proxy: Proxy;
    try {
      proxy = await Proxy.listen({ host, port, identity, registrationToken: options.token });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new UnreachableError(
        code === 'EADDRINUSE' ? `cannot listen on ${host}:${port}: the address is already in use` : `cannot listen on ${host}:${port}: ${(err as Error).message}`,
      );
    }
    process.stdout.write(`${proxy.endpoint}\n`);
    log.info({ endpoint: proxy.endpoint, routingId: proxy.routingId.toString(), token: options.token !== undefined }, 'proxy listening');

    await new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        const stats = proxy.stats();
        log.info({ signal, drainTimeoutMs: options.drainTimeout, connections: stats.connections, vcs: stats.vcs }, 'shutting down: telling connected processes the proxy is going away');
        void proxy.close({ drainTimeout: options.drainTimeout }).then(() => {
          log.info({ bytesForwarded: proxy.stats().bytesForwarded }, 'proxy stopped');
          resolve();
        });
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
  });
}
