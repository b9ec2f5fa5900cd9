import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.js';

const LOGGER = fileURLToPath(new URL('../../dist/src/cli/logger.js', import.meta.url));
const LINES = 20_000;

// A process whose stderr nobody reads: it logs 20 MB (more than the 16 MiB the logger holds),
// says so on stdout, then logs one more line when told (the parent has read most of the backlog
// by then) and exits by itself, which writes whatever is still waiting.
const CHILD = `
import { createLogger } from ${JSON.stringify(LOGGER)};
const { log, announce } = createLogger({ level: 'info', pretty: false });
announce('ready\\n');
const pad = 'x'.repeat(1000);
for (let i = 0; i < ${LINES}; i++) log.info({ i, pad }, 'line');
process.stdout.write('filled\\n');
process.stdin.once('data', () => {
  log.info('after');
  process.stdin.destroy();
});
`;

describe('createLogger', () => {
  it('holds at most 16 MiB of lines for a stderr nobody reads, drops the rest, and counts them in the next line written', async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    await waitFor(() => stdout.includes('filled\n'), 'the child to log every line', 30_000);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await waitFor(() => stderr.length > 15 * 1024 * 1024, 'most of the backlog to be read', 30_000);
    child.stdin.write('go\n');
    expect(await exited).toBe(0);
    const lines = stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg: string; i?: number; droppedLogLines?: number });
    const written = lines.filter((line) => line.msg === 'line');
    const after = lines.find((line) => line.msg === 'after');
    expect(after?.droppedLogLines).toBeGreaterThan(0);
    // Every line is either written, in order, or counted as dropped: none lost without a trace.
    expect(written.length + after!.droppedLogLines!).toBe(LINES);
    expect(written.map((line) => line.i)).toEqual([...written.map((line) => line.i!)].sort((a, b) => a - b));
    // What was held is about the bound: 16 MiB of ~1.1 KB lines.
    expect(Buffer.byteLength(stderr)).toBeLessThan(18 * 1024 * 1024);
    expect(Buffer.byteLength(stderr)).toBeGreaterThan(15 * 1024 * 1024);
  }, 60_000);
});
