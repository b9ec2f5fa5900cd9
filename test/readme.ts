import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository's root directory. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** README.md as it stands. */
export function readme(): string {
  return readFileSync(new URL('../README.md', import.meta.url), 'utf8');
}

/** The README's fenced code blocks in `language` (```ts ... ```), in order, without their fences. */
export function readmeBlocks(language: string): string[] {
  return [...readme().matchAll(new RegExp(`^\`\`\`${language}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))].map((match) => match[1]);
}

/** The one README block in `language` that contains `marker`; throws when none or several do. */
export function readmeBlock(language: string, marker: string): string {
  const blocks = readmeBlocks(language).filter((block) => block.includes(marker));
  if (blocks.length !== 1) throw new Error(`README.md has ${blocks.length} \`\`\`${language} blocks containing ${JSON.stringify(marker)}, expected 1`);
  return blocks[0];
}

/**
 * The code a test file runs between `// readme:start` and `// readme:end` (inside a test body,
 * so one level of two-space indentation is removed): what the README must show, character for
 * character.
 */
export function markedExample(testFileUrl: string): string {
  const source = readFileSync(new URL(testFileUrl), 'utf8');
  const start = source.indexOf('// readme:start\n');
  const end = source.indexOf('  // readme:end');
  if (start < 0 || end < start) throw new Error(`${testFileUrl} has no // readme:start ... // readme:end section`);
  return source
    .slice(start + '// readme:start\n'.length, end)
    .split('\n')
    .map((line) => line.replace(/^ {2}/, ''))
    .join('\n');
}
