import { abortReason, type RidproxyError } from '../errors.js';

interface Waiter<T> {
  resolve(item: T): void;
  reject(err: unknown): void;
}

/**
 * A bounded FIFO between producers that must not block (incoming flows) and consumers that
 * wait (accept calls). `offer` refuses past the capacity so the producer can shed load.
 */
export class AcceptQueue<T> {
  private readonly items: T[] = [];
  private readonly waiters = new Set<Waiter<T>>();
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get length(): number {
    return this.items.length;
  }

  /** Hands `item` to a waiting consumer or queues it; false when the queue is full. */
  offer(item: T): boolean {
    for (const waiter of this.waiters) {
      this.waiters.delete(waiter);
      waiter.resolve(item);
      return true;
    }
    if (this.items.length >= this.capacity) return false;
    this.items.push(item);
    return true;
  }

  take(signal?: AbortSignal): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift()!);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(waiter);
        reject(abortReason(signal!));
      };
      const waiter: Waiter<T> = {
        resolve: (item) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(item);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      this.waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Rejects every waiting consumer with the error `reason` builds (only built if someone waits). */
  failWaiters(reason: () => RidproxyError): void {
    if (this.waiters.size === 0) return;
    const err = reason();
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) waiter.reject(err);
  }

  /** Takes a queued item out (e.g. one that failed before anyone accepted it). */
  remove(item: T): void {
    const index = this.items.indexOf(item);
    if (index >= 0) this.items.splice(index, 1);
  }

  drain(): T[] {
    return this.items.splice(0, this.items.length);
  }
}
