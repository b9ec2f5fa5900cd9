import { InvalidArgumentError } from 'commander';

/** commander argument parser for options that take a whole number of milliseconds or bytes. */
export function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed)) throw new InvalidArgumentError(`"${value}" is not a whole number`);
  return parsed;
}
