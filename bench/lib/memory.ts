import { delay } from './payload.js';

export interface MemorySample {
  rssBytes: number;
  heapUsedBytes: number;
  /** The process's highest RSS so far (getrusage's maxrss), garbage the collections above freed included. */
  peakRssBytes: number;
}

/**
 * RSS after two full collections and a pause, so garbage from setting up does not count as the
 * steady-state cost. Workers run with --expose-gc; without it this is just a plain reading.
 */
export async function settledMemory(): Promise<MemorySample> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 2; i++) {
    gc?.();
    await delay(200);
  }
  const usage = process.memoryUsage();
  return { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
}
