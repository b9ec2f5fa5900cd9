import { InvalidArgumentError } from 'commander';

/**
 * commander argument parser for options that take a whole number of milliseconds or bytes, 0
 * included (where the option says what 0 means). It throws commander's InvalidArgumentError, not
 * a RidproxyError, on purpose: commander only turns errors whose code is
 * 'commander.invalidArgument' into its usage error (naming the option, with the help hint); any
 * other error would escape parsing as a bare failure.
 */
export function wholeNumber(value: string): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed)) throw new InvalidArgumentError(`"${value}" is not a whole number`);
  return parsed;
}

/** As wholeNumber, for options 0 has no meaning for (most limits: 0 would refuse every connection, VC or flow). */
export function positiveInteger(value: string): number {
  const parsed = wholeNumber(value);
  if (parsed === 0) throw new InvalidArgumentError('give a whole number of at least 1');
  return parsed;
}

/**
 * commander argument parser for `serve --public-port`: a port (0 for any) or a comma-separated
 * list of them, added to what earlier occurrences of the option gave.
 */
export function publicPortList(value: string, previous: number[] | undefined): number[] {
  const ports = value.split(',').map((part) => {
    const port = Number(part.trim());
    if (!/^\d+$/.test(part.trim()) || port > 65535) throw new InvalidArgumentError(`"${part}" is not a port number (0 for any, else 1-65535)`);
    return port;
  });
  return [...(previous ?? []), ...ports];
}
