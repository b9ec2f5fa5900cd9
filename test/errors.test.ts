import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { sourceFiles } from './helpers.js';
import { ERROR_CODES, IntegrityError, RidproxyError, ServiceUnreachableError, UnauthorizedError, type ErrorCode } from '../src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function documentedCodes(): string[] {
  const markdown = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  const codesSection = markdown.split(/^## /m).find((section) => section.startsWith('Codes'));
  if (codesSection === undefined) throw new Error('docs/errors.md has no "## Codes" section');
  return codesSection
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .slice(2) // the header row and the |---| row
    .map((line) => line.split('|')[1].trim().replace(/^`(.*)`$/, '$1'));
}

describe('error codes', () => {
  test('docs/errors.md has one row for every code in ERROR_CODES, and no other', () => {
    // Sorted arrays rather than sets, so a duplicate on either side fails too.
    expect(documentedCodes().sort()).toEqual([...ERROR_CODES].sort());
  });

  test("every 'ERR_…' literal in src/ is a member of ERROR_CODES", () => {
    const known = new Set<string>(ERROR_CODES);
    const unknown: string[] = [];
    let seen = 0;
    for (const file of sourceFiles(join(root, 'src'))) {
      // A literal ending in '_' (ERR_SSL_, ERR_TLS_) is a prefix matched against Node's own codes, not a ridproxy code.
      for (const [, code] of readFileSync(file, 'utf8').matchAll(/['"`](ERR_[A-Z0-9]+(?:_[A-Z0-9]+)*)['"`]/g)) {
        seen++;
        if (!known.has(code)) unknown.push(`${code} in ${file.slice(root.length)}`);
      }
    }
    expect(unknown).toEqual([]);
    // A scan that found nothing (src/ moved, the pattern broken) must not pass.
    expect(seen).toBeGreaterThan(ERROR_CODES.length);
  });

  test.each([
    ['IntegrityError', IntegrityError, 'ERR_INTEGRITY'],
    ['UnauthorizedError', UnauthorizedError, 'ERR_UNAUTHORIZED'],
    ['ServiceUnreachableError', ServiceUnreachableError, 'ERR_SERVICE_UNREACHABLE'],
  ] as const)('%s is a RidproxyError named after its class, with the code %s', (name, ErrorClass, code: ErrorCode) => {
    const cause = new Error('underneath');
    const err = new ErrorClass('what happened', { cause });
    expect(err).toBeInstanceOf(RidproxyError);
    expect(err).toMatchObject({ name, code, message: 'what happened', cause });
  });
});
