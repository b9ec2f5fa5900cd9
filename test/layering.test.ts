import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { sourceFiles } from './helpers.js';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/**
 * README "Design notes", Layers: each folder of src/ may import only the folders before it (and
 * src/errors.ts). src/cli and src/grpc are both on top and do not import each other.
 */
const LAYERS: string[][] = [['id'], ['flow-control'], ['wire'], ['hop'], ['proxy'], ['cluster'], ['secure'], ['mux'], ['manager'], ['tunnel'], ['ingress'], ['cli', 'grpc']];

function rank(folder: string): number {
  return LAYERS.findIndex((layer) => layer.includes(folder));
}

test('every src/ folder imports only the layers below it', () => {
  const upward: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const from = relative(SRC, file).split('/');
    if (from.length === 1) continue; // index.ts and errors.ts
    const fromRank = rank(from[0]!);
    expect(fromRank, `${from[0]} is in no layer`).toBeGreaterThanOrEqual(0);
    for (const [, specifier] of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
      const to = relative(SRC, resolve(dirname(file), specifier!)).split('/');
      if (to.length === 1 || to[0] === from[0]) continue;
      if (!(rank(to[0]!) < fromRank)) upward.push(`${relative(SRC, file)} imports ${specifier}`);
    }
  }
  expect(upward).toEqual([]);
});
