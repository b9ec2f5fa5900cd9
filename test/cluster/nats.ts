import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';

/** Debian installs it in /usr/sbin, which a user's PATH may lack; $NATS_SERVER names another. */
const NATS_SERVER = process.env.NATS_SERVER ?? (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');

/** A nats-server (Debian's package) this test started on a port of its own. */
export interface NatsServer {
  port: number;
  url: string;
  /** SIGKILLs it: clients see the connection drop, as on a crash. */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Resolves once something accepts TCP connections on the port; rejects after `timeout` ms. */
async function accepting(port: number, timeout: number): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nats-server did not listen on port ${port} within ${timeout} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const running = new Set<ChildProcess>();

/** Starts `nats-server` on a free loopback port (requiring `token` from clients, if given) and waits until it accepts connections. */
export async function startNats(options: { token?: string } = {}): Promise<NatsServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  let stderr = '';
  const launch = async (): Promise<void> => {
    const auth = options.token === undefined ? [] : ['--auth', options.token];
    const proc = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), ...auth], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    running.add(proc);
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (text: string) => {
      stderr = (stderr + text).slice(-4000);
    });
    proc.once('exit', () => running.delete(proc));
    const spawned = new Promise<never>((_, reject) => {
      proc.once('error', (err) => reject(new Error(`cannot run nats-server (apt-get install nats-server): ${err.message}`)));
      proc.once('exit', (code) => reject(new Error(`nats-server exited with ${code}: ${stderr}`)));
    });
    spawned.catch(() => undefined);
    await Promise.race([accepting(port, 10_000), spawned]);
  };
  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  };
  await launch();
  return { port, url: `nats://127.0.0.1:${port}`, kill, restart: launch };
}

/** Kills every nats-server the tests of this process started. */
export async function stopAllNats(): Promise<void> {
  await Promise.all(
    [...running].map(
      (proc) =>
        new Promise<void>((resolve) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
          proc.once('exit', () => resolve());
          proc.kill('SIGKILL');
        }),
    ),
  );
}
