/**
 * The `ssh -R` path, what users compare ridproxy with: client -> sshd's remote-forwarded port ->
 * the ssh connection -> `ssh -N -R` -> TCP sink. sshd is a throwaway one on a free loopback port,
 * run as the current user with host and user keys made by ssh-keygen in a temporary directory
 * (no system configuration, PAM or strict modes); the ssh client uses aes128-gcm@openssh.com and
 * nothing from ~/.ssh. With `rttMs` > 0 a delay relay between the ssh client and sshd adds the
 * whole RTT to the ssh connection (the path's one long hop).
 * When sshd is not installed, sshProblem() says so and the path is reported as SKIPPED.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { Worker } from '../harness/children.js';
import type { RelayApi } from '../workers/relay.js';
import { startDelay } from './baselines.js';
import { freePort, OutputProcess, waitForPort } from './process.js';
import type { Route } from './types.js';

const CIPHER = 'aes128-gcm@openssh.com';
/** The name ssh checks sshd's host key under, whatever port (sshd's or a delay relay's) it connects to. */
const HOST_ALIAS = 'ridproxy-bench-sshd';

/** An executable by that name in PATH or the sbin directories (sshd is often outside a user's PATH). */
function findProgram(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Why the ssh path cannot run now, or undefined when it can. */
export function sshProblem(): string | undefined {
  if (!findProgram('sshd')) return 'sshd is not installed (Debian/Ubuntu: apt-get install openssh-server; the bench starts its own on loopback, never the system one)';
  const missing = ['ssh', 'ssh-keygen'].filter((p) => !findProgram(p));
  if (missing.length > 0) return `${missing.join(' and ')} not installed (openssh-client)`;
  return undefined;
}

function keygen(file: string): void {
  const run = spawnSync(findProgram('ssh-keygen')!, ['-q', '-t', 'ed25519', '-N', '', '-C', HOST_ALIAS, '-f', file], { encoding: 'utf8', timeout: 10_000 });
  if (run.status !== 0) throw new Error(`ssh-keygen failed: ${run.stderr}`);
}

function sshdArgs(dir: string, port: number): string[] {
  return [
    '-D', // in the foreground, so it is our child and dies with the bench
    '-e', // log to stderr (kept for error messages)
    '-f', '/dev/null', // no system sshd_config: everything is below
    '-o', `ListenAddress=127.0.0.1:${port}`,
    '-o', `HostKey=${join(dir, 'host_key')}`,
    '-o', `AuthorizedKeysFile=${join(dir, 'authorized_keys')}`,
    '-o', 'PidFile=none',
    '-o', 'UsePAM=no',
    '-o', 'StrictModes=no', // the temporary directory's modes are not sshd's business
    '-o', 'PasswordAuthentication=no',
    '-o', 'KbdInteractiveAuthentication=no',
    '-o', 'PubkeyAuthentication=yes',
    '-o', 'AllowTcpForwarding=remote',
    '-o', `Ciphers=${CIPHER}`,
    '-o', 'LogLevel=ERROR',
  ];
}

function sshArgs(dir: string, port: number, sinkPort: number): string[] {
  return [
    '-F', '/dev/null', // nothing from ~/.ssh/config or /etc/ssh/ssh_config
    '-N', // no command, forwarding only
    '-T',
    '-c', CIPHER,
    '-i', join(dir, 'user_key'),
    '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `HostKeyAlias=${HOST_ALIAS}`,
    '-o', 'ExitOnForwardFailure=yes',
    '-o', 'ControlMaster=no',
    '-o', 'ControlPath=none',
    '-o', 'Compression=no',
    '-p', String(port),
    '-l', userInfo().username,
    // Port 0: sshd picks a free port and ssh prints it ("Allocated port N for remote forward").
    '-R', `0:127.0.0.1:${sinkPort}`,
    '127.0.0.1',
  ];
}

const ALLOCATED_RE = /Allocated port (\d+) for remote forward/;

export async function startSshPath(sinkPort: number, rttMs = 0): Promise<{ route: Route; kill(): void }> {
  const sshd = findProgram('sshd');
  const ssh = findProgram('ssh');
  if (!sshd || !ssh) throw new Error(sshProblem() ?? 'ssh not found');
  const dir = mkdtempSync(join(tmpdir(), 'ridproxy-bench-ssh-'));
  const procs: OutputProcess[] = [];
  let delayRelay: Worker<RelayApi> | undefined;
  const kill = (): void => {
    // The client first: its connection closing ends sshd's per-connection process, which a kill of the listening sshd would leave behind.
    for (const p of [...procs].reverse()) p.kill();
    delayRelay?.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    keygen(join(dir, 'host_key'));
    keygen(join(dir, 'user_key'));
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')));
    writeFileSync(join(dir, 'known_hosts'), `${HOST_ALIAS} ${readFileSync(join(dir, 'host_key.pub'), 'utf8')}`);
    const sshdPort = await freePort();
    // sshd must be started by its absolute path (it re-executes itself for every connection).
    const server = new OutputProcess('sshd', sshd, sshdArgs(dir, sshdPort));
    procs.push(server);
    await waitForPort(sshdPort, 10_000, server);
    let port = sshdPort;
    if (rttMs > 0) {
      const relay = await startDelay('ssh delay', sshdPort, rttMs / 2);
      delayRelay = relay.worker;
      port = relay.port;
    }
    const client = new OutputProcess('ssh -R', ssh, sshArgs(dir, port, sinkPort));
    procs.push(client);
    const forwarded = await client.waitFor('"Allocated port" line', () => {
      const match = ALLOCATED_RE.exec(client.output);
      return match ? Number(match[1]) : undefined;
    }, 15_000 + 10 * rttMs);
    await waitForPort(forwarded, 10_000, client);
    // sshd's share is its per-connection children (the listener itself is idle); the delay relay is the emulated network, not ssh.
    const relayPids = (): number[] => [server, client].flatMap((p) => (p.child.pid === undefined ? [] : [p.child.pid]));
    return { route: { path: 'ssh', target: { kind: 'tcp', host: '127.0.0.1', port: forwarded }, relayPids }, kill };
  } catch (err) {
    kill();
    throw err;
  }
}
