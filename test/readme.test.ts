import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, readmeBlock } from './readme.js';

const held: Server[] = [];

afterEach(async () => {
  await Promise.all(held.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** Takes `port` on loopback if it is free, as the walkthrough's proxy would; a port already taken serves as well. */
async function occupy(port: number): Promise<void> {
  const server = createServer();
  const taken = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (taken) held.push(server);
}

describe('README', () => {
  it('the library example runs as written, next to a proxy on 8100, prints the echo and exits on its own', async () => {
    const example = readmeBlock('ts', "flow.end('hello');");
    // A directory of its own where `import ... from 'ridproxy'` finds this package, as it would in
    // a project that installed it (the package's exports point at dist/, built by `npm test`).
    const dir = mkdtempSync(join(tmpdir(), 'ridproxy-readme-'));
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(ROOT, join(dir, 'node_modules', 'ridproxy'), 'dir');
    writeFileSync(join(dir, 'example.mjs'), example);
    await occupy(8100);

    const startedAt = Date.now();
    const child = spawn(process.execPath, [join(dir, 'example.mjs')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
    clearTimeout(timer);
    console.log(`the README's library example exited with ${code} after ${Date.now() - startedAt} ms`);
    expect({ code, stdout, stderr }).toEqual({ code: 0, stdout: 'hello\n', stderr: '' });
  });
});
