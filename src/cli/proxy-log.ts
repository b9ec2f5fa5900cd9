import type { Proxy } from '../proxy/proxy.js';
import type { ProxyRefusedEvent } from '../proxy/events.js';
import type { Logger } from './logger.js';

/** Default milliseconds over which repeated refusals are summed into one line (`proxy start --refusal-log-interval`). */
export const DEFAULT_REFUSAL_LOG_INTERVAL = 10_000;
/** Distinct (kind, code, address) keys tracked per interval; refusals past them are summed per (kind, code) from "other addresses". */
const MAX_REFUSAL_KEYS = 100;

interface Pending {
  last: ProxyRefusedEvent;
  suppressed: number;
}

/**
 * Logs what the proxy reports, at info: each registration and its end, each VC opened and
 * closed, and refusals aggregated. The first refusal of a kind and code from one address group
 * in an interval is logged in full; the ones after it are counted and logged as one line ("N
 * more like this in the last 10 s") when the interval ends. So a flood from one address costs
 * two lines per interval, and one from many addresses at most 2 x (MAX_REFUSAL_KEYS + one per
 * kind and code). `flush()` writes the pending counts at once (on shutdown).
 */
export function logProxyEvents(proxy: Proxy, log: Logger, intervalMs = DEFAULT_REFUSAL_LOG_INTERVAL): { flush(): void } {
  proxy.on('registered', (event) => log.info({ event: 'registered', ...event }, 'server registered'));
  proxy.on('unregistered', (event) => log.info({ event: 'unregistered', ...event }, 'registration ended'));
  proxy.on('vcOpened', (event) => log.info({ event: 'vcOpened', ...event }, 'VC opened'));
  proxy.on('vcClosed', (event) => log.info({ event: 'vcClosed', ...event }, event.accepted ? 'VC closed' : 'VC closed before the server accepted it'));

  const pending = new Map<string, Pending>();
  let since = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const flush = (): void => {
    const seconds = Math.round((Date.now() - since) / 100) / 10;
    for (const { last, suppressed } of pending.values()) {
      if (suppressed === 0) continue;
      const { kind, code, reason, addressGroup } = last;
      log.info({ event: 'refused', kind, code, reason, addressGroup, suppressed, seconds }, `${suppressed} more like this in the last ${seconds} s`);
    }
    pending.clear();
    since = Date.now();
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  proxy.on('refused', (event) => {
    let key = `${event.kind}|${event.code}|${event.addressGroup}`;
    if (!pending.has(key) && pending.size >= MAX_REFUSAL_KEYS) key = `${event.kind}|${event.code}|*`;
    const entry = pending.get(key);
    if (entry !== undefined) {
      entry.suppressed++;
      entry.last = key.endsWith('|*') ? { ...event, addressGroup: 'other addresses' } : event;
      return;
    }
    pending.set(key, { last: event, suppressed: 0 });
    log.info({ event: 'refused', ...event }, `refused a ${event.kind}: ${event.reason}`);
    if (timer === undefined) {
      since = Date.now();
      timer = setTimeout(flush, intervalMs);
      timer.unref();
    }
  });
  return { flush };
}
