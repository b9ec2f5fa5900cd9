import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../readme.js';
import { isolatedConfig, runCli } from './cli.js';

/**
 * The files in deploy/ as far as this machine can check them: systemd's own verifier for the
 * unit, and for the Dockerfile (no container runtime here) what it copies, its user and volume,
 * and its command run as a script with the environment the image gives it.
 */

const DOCKERFILE = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');

/** The arguments of every `directive` line of the Dockerfile's last stage. */
function finalStage(directive: string): string[] {
  const stage = DOCKERFILE.slice(DOCKERFILE.lastIndexOf('\nFROM '));
  return [...stage.matchAll(new RegExp(`^${directive} (.+)$`, 'gm'))].map((m) => m[1]!);
}

describe('deploy/', () => {
  it('ridproxy.service passes systemd-analyze verify without a warning', () => {
    const analyze = spawnSync('systemd-analyze', ['--version']);
    if (analyze.error) {
      console.log('systemd-analyze is not installed: the unit file is not verified here');
      return;
    }
    const result = spawnSync('systemd-analyze', ['verify', join(ROOT, 'deploy/ridproxy.service')], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(readFileSync(join(ROOT, 'deploy/ridproxy.service'), 'utf8')).toMatch(/^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  });

  it('the Dockerfile copies what exists, runs as a user of its own, and keeps its state in the volume', () => {
    for (const copy of [...DOCKERFILE.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(' '))) {
      expect(existsSync(join(ROOT, copy)), `COPY ${copy}`).toBe(true);
    }
    expect(finalStage('USER')).toEqual(['ridproxy']);
    expect(finalStage('ENV')).toEqual(['XDG_CONFIG_HOME=/var/lib/ridproxy']);
    expect(finalStage('VOLUME')).toEqual(['/var/lib/ridproxy']);
    expect(finalStage('EXPOSE')).toEqual(['8100']);
    expect(JSON.parse(finalStage('CMD')[0]!)).toEqual(['start', '--listen', '0.0.0.0:8100']);
  });

  it("the image's command, run with its environment, prints the endpoint, keeps the identity in the state directory, survives SIGHUP and stops on SIGTERM", async () => {
    const entrypoint = JSON.parse(finalStage('ENTRYPOINT')[0]!) as string[];
    // The launcher itself, so that its #! line's node flags apply (runCli runs it the same way).
    expect(entrypoint).toEqual(['/opt/ridproxy/bin/proxy.js']);
    const command = JSON.parse(finalStage('CMD')[0]!) as string[];
    const state = isolatedConfig();
    // The same command, on a free loopback port instead of the image's 0.0.0.0:8100.
    const args = command.map((arg) => (arg === '0.0.0.0:8100' ? '127.0.0.1:0' : arg));
    const proxy = runCli(args, { config: state });
    expect(await proxy.firstLine).toMatch(/^ridp:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32}$/);
    const identity = join(state, 'ridproxy', 'proxy-identity.pem');
    expect(statSync(identity).mode & 0o777).toBe(0o600);
    proxy.child.kill('SIGHUP');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(proxy.child.exitCode).toBeNull();
    proxy.child.kill('SIGTERM');
    expect(await proxy.exited, proxy.stderr()).toEqual({ code: 0, signal: null });
    // Restarted on the same volume, it has the same routing id.
    const again = runCli(args, { config: state });
    expect((await again.firstLine).split('/').pop()).toBe((await proxy.firstLine).split('/').pop());
    again.child.kill('SIGTERM');
    await again.exited;
  });
});
