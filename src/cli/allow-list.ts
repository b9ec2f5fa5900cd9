import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.js';
import { RoutingId } from '../id/routing-id.js';

/**
 * Reads a file of routing IDs that may register: one 32-hex RID per line; blank lines and
 * text after `#` are ignored. A bad line is an error naming the file and line, never skipped.
 * `what` names the list in errors (the cluster's peers file has the same form).
 */
export async function loadAllowList(file: string, what = 'allow-list'): Promise<Set<string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `${what} file ${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const allowed = new Set<string>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    try {
      allowed.add(RoutingId.parse(line).toString());
    } catch (err) {
      throw new InvalidArgumentError('ERR_INVALID_OPTION', `${what} file ${file}, line ${index + 1}: ${(err as Error).message}`);
    }
  });
  return allowed;
}
