import { InvalidArgumentError } from 'commander';

/**
 * commander argument parser for options that take a whole number of milliseconds or bytes.
 * It throws commander's InvalidArgumentError, not a RidproxyError, on purpose: commander only
 * turns errors whose code is 'commander.invalidArgument' into its usage error (naming the option,
 * with the help hint); any other error would escape parsing as a bare failure.
 */
export function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed)) throw new InvalidArgumentError(`"${value}" is not a whole number`);
  return parsed;
}
