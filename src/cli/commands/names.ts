import type { Command } from 'commander';
import { InvalidArgumentError } from '../../errors.js';
import { namesFile } from '../../ingress/names.js';
import { defaultProxyIdentityPath } from '../identity-file.js';
import { defaultNamesPath } from '../web-ingress.js';

const FILE_HELP = `the proxy's names file (default: ${defaultNamesPath(defaultProxyIdentityPath())}, as for start --names-file)`;

export function registerNames(program: Command): void {
  const names = program.command('names').description("List or release the web ingress's reserved host names (start --domain). A running proxy reads the file again on SIGHUP.");
  names
    .command('list')
    .description('Print each reserved name, the routing ID it is reserved for, and when it was claimed.')
    .option('--names-file <file>', FILE_HELP)
    .action((options: { namesFile?: string }) => {
      const file = options.namesFile ?? defaultNamesPath(defaultProxyIdentityPath());
      for (const { name, routingId, claimedAt } of namesFile(file).list()) process.stdout.write(`${name}  ${routingId}  ${claimedAt}\n`);
    });
  names
    .command('release')
    .description('Release a reserved name, so the next key that asks for it gets it; then send the proxy SIGHUP (systemctl reload).')
    .argument('<name>', 'the name, without the domain')
    .option('--names-file <file>', FILE_HELP)
    .addHelpText('after', '\nExample:\n  $ npx proxy names release myapp && systemctl reload ridproxy')
    .action((name: string, options: { namesFile?: string }) => {
      const file = options.namesFile ?? defaultNamesPath(defaultProxyIdentityPath());
      if (!namesFile(file).release(name)) throw new InvalidArgumentError('ERR_INVALID_OPTION', `the name ${name} is not reserved in ${file}`);
      process.stderr.write(`released ${name}; send the proxy SIGHUP to apply it\n`);
    });
}
