/**
 * Runs `task(i)` for i in [0, count) with at most `concurrency` in flight. Failures are counted,
 * not thrown, so one refused connection does not void a rate measurement; the first is kept to report.
 */
export async function runPool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<{ completed: number; failures: number; firstError: string | undefined }> {
  let next = 0;
  let completed = 0;
  let failures = 0;
  let firstError: string | undefined;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const index = next++;
      try {
        await task(index);
        completed++;
      } catch (err) {
        failures++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, lane));
  return { completed, failures, firstError };
}
