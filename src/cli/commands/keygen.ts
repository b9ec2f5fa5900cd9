import type { Command } from 'commander';
import { Identity, saveIdentity } from '../../id/identity.js';
import { defaultIdentityPath } from '../identity-file.js';

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('Create an identity (Ed25519 key pair) and print its routing ID.')
    .option('--out <file>', 'where to write the identity, mode 0600 (PEM; JSON if the name ends in .json); use it with serve, connect or start --identity', defaultIdentityPath())
    .option('--force', 'replace an existing file')
    .addHelpText('after', '\nExample:\n  $ npx proxy keygen --out ./server.pem\n  4f1c0e...  (the routing ID; the file is written with mode 0600)')
    .action(async (options: { out: string; force?: boolean }) => {
      const identity = Identity.generate();
      await saveIdentity(identity, options.out, { force: options.force ?? false });
      process.stdout.write(`${identity.routingId}\n`);
      process.stderr.write(`identity written to ${options.out}\n`);
    });
}
