/** The one-line text of an error, as the CLI shows and logs it. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
