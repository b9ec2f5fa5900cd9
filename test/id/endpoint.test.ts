import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Endpoint, RoutingId, parseAddress } from '../../src/id/index.js';

const RID = '0123456789abcdef0123456789abcdef';
const FORM =
  'expected ridp://host:port/<routing id>, ridp://<proxy routing id>@host:port/<routing id> (several routes joined with ",") or ridp:///<routing id> (routing ids are 32 hex characters)';

function errorOf(fn: () => unknown): { code?: string; message: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('expected an error');
}

const ridArb = fc.oneof(
  fc.constant(RoutingId.NULL),
  fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => RoutingId.fromBytes(b)),
);
const hostArb = fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6(), fc.constantFrom('localhost', 'fe80::1%eth0', 'my_host', 'A.Example.COM'));
const portArb = fc.integer({ min: 1, max: 65535 });

describe('Endpoint', () => {
  it('parse(toString()) round-trips for any host, port and routing id', () => {
    fc.assert(
      fc.property(hostArb, portArb, ridArb, fc.boolean(), (host, port, rid, viaProxy) => {
        const ep = new Endpoint(host, port, rid, viaProxy && !rid.isNull() ? RoutingId.parse('ab'.repeat(16)) : RoutingId.NULL);
        const s = ep.toString();
        const back = Endpoint.parse(s);
        expect(back.equals(ep)).toBe(true);
        expect(back.toString()).toBe(s);
        expect(Endpoint.parse(`  ${s}\n`).equals(ep)).toBe(true);
        // The schemeless form parses to the same endpoint.
        expect(Endpoint.parse(s.slice('ridp://'.length)).equals(ep)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('formats IPv6 hosts in brackets and leaves out the null routing id', () => {
    const ep = new Endpoint('::1', 7700, RoutingId.parse(RID));
    expect(ep.address).toBe('[::1]:7700');
    expect(ep.toString()).toBe(`ridp://[::1]:7700/${RID}`);
    expect(ep.withRoutingId(RoutingId.NULL).toString()).toBe('ridp://[::1]:7700');
    expect(new Endpoint('[::1]', 1, RoutingId.NULL).host).toBe('::1');
    expect(JSON.stringify({ ep })).toBe(`{"ep":"ridp://[::1]:7700/${RID}"}`);
  });

  it('parses the accepted forms', () => {
    const a = Endpoint.parse(`ridp://Proxy.Example.com:7700/${RID.toUpperCase()}`);
    expect([a.host, a.port, a.routingId.toString()]).toEqual(['proxy.example.com', 7700, RID]);
    expect(Endpoint.parse('ridp://10.0.0.1:80').routingId.isNull()).toBe(true);
    expect(Endpoint.parse('ridp://10.0.0.1:80/').routingId.isNull()).toBe(true);
    expect(Endpoint.parse('10.0.0.1:80').address).toBe('10.0.0.1:80');
    expect(Endpoint.parse(`RIDP://[2001:db8::1]:443/${RID}`).address).toBe('[2001:db8::1]:443');
    expect(Endpoint.parse(`[::1]:9/${RID}`).routingId.toString()).toBe(RID);
  });

  it('names a pinned proxy before the address, and pins the hop to it (or to the destination when there is none)', () => {
    const proxyRid = 'cd'.repeat(16);
    const ep = Endpoint.parse(`ridp://${proxyRid}@h:1/${RID}`);
    expect([ep.proxyRoutingId.toString(), ep.routingId.toString(), ep.address]).toEqual([proxyRid, RID, 'h:1']);
    expect(ep.toString()).toBe(`ridp://${proxyRid}@h:1/${RID}`);
    expect(ep.hopRoutingId.toString()).toBe(proxyRid);
    expect(Endpoint.parse(`ridp://h:1/${RID}`).hopRoutingId.toString()).toBe(RID);
    expect(Endpoint.parse('ridp://h:1').hopRoutingId.isNull()).toBe(true);
    expect(ep.equals(Endpoint.parse(`ridp://h:1/${RID}`))).toBe(false);
    expect(ep.withRoutingId(RoutingId.parse(proxyRid)).proxyRoutingId.toString()).toBe(proxyRid);
  });

  it('names a routing id with no address as ridp:///<rid>, and round-trips it', () => {
    const ep = Endpoint.parse(`ridp:///${RID}`);
    expect([ep.host, ep.port, ep.hasAddress, ep.address, ep.routingId.toString()]).toEqual(['', 0, false, '', RID]);
    expect(ep.toString()).toBe(`ridp:///${RID}`);
    expect(Endpoint.parse(`/${RID}`).equals(ep)).toBe(true);
    expect(new Endpoint('', 0, RoutingId.parse(RID)).equals(ep)).toBe(true);
    expect(ep.equals(Endpoint.parse(`ridp://h:1/${RID}`))).toBe(false);
    expect(Endpoint.parse(`ridp://h:1/${RID}`).hasAddress).toBe(true);
    fc.assert(
      fc.property(ridArb.filter((rid) => !rid.isNull()), (rid) => {
        const back = Endpoint.parse(new Endpoint('', 0, rid).toString());
        expect(back.hasAddress).toBe(false);
        expect(back.routingId.equals(rid)).toBe(true);
      }),
    );
  });

  it('carries several routes to one process, round-trips them, and still parses one-route endpoints as before', () => {
    const p1 = 'ab'.repeat(16);
    const p2 = 'cd'.repeat(16);
    const text = `ridp://${p1}@relay-a.example.com:7700,${p2}@[2001:db8::2]:7701,10.0.0.9:9/${RID}`;
    const ep = Endpoint.parse(text);
    expect(ep.toString()).toBe(text);
    expect(ep.routes.map((r) => r.toString())).toEqual([`ridp://${p1}@relay-a.example.com:7700/${RID}`, `ridp://${p2}@[2001:db8::2]:7701/${RID}`, `ridp://10.0.0.9:9/${RID}`]);
    // The first route is the endpoint's own address.
    expect([ep.address, ep.proxyRoutingId.toString()]).toEqual(['relay-a.example.com:7700', p1]);
    expect(Endpoint.withRoutes(ep.routes).equals(ep)).toBe(true);
    expect(ep.equals(ep.routes[0])).toBe(false);
    expect(Endpoint.withRoutes([ep, ep.routes[1]]).routes.length).toBe(3);
    expect(Endpoint.parse(`ridp://${p1}@h:1/${RID}`).routes).toHaveLength(1);
    fc.assert(
      fc.property(fc.array(fc.tuple(hostArb, portArb, fc.boolean()), { minLength: 1, maxLength: 4 }), ridArb.filter((rid) => !rid.isNull()), (routes, rid) => {
        const eps = routes.map(([host, port, viaProxy]) => new Endpoint(host, port, rid, viaProxy ? RoutingId.parse(p2) : RoutingId.NULL));
        const combined = Endpoint.withRoutes(eps);
        expect(Endpoint.parse(combined.toString()).equals(combined)).toBe(true);
      }),
      { numRuns: 100 },
    );
    expect(errorOf(() => Endpoint.parse(`ridp://${p1}@h:1,h2/${RID}`)).message).toMatch(/route "h2": missing port/);
    expect(errorOf(() => Endpoint.parse('ridp://h:1,h:2')).message).toMatch(/several addresses must name the destination routing id/);
    expect(errorOf(() => Endpoint.withRoutes([ep, Endpoint.parse(`ridp://h:1/${'ef'.repeat(16)}`)])).message).toMatch(/same routing id/);
  });

  it('equals compares host, port and routing id', () => {
    const ep = Endpoint.parse(`ridp://h:1/${RID}`);
    expect(ep.equals(Endpoint.parse(`ridp://H:1/${RID}`))).toBe(true);
    expect(ep.equals(Endpoint.parse(`ridp://h:2/${RID}`))).toBe(false);
    expect(ep.equals(Endpoint.parse('ridp://h:1'))).toBe(false);
    expect(ep.equals(Endpoint.parse(`ridp://g:1/${RID}`))).toBe(false);
  });

  const bad: Array<[string, RegExp]> = [
    [`ridp://h:99999/${RID}`, /port 99999 is out of range \(1-65535\)/],
    [`ridp://h:0/${RID}`, /port 0 is out of range \(1-65535\)/],
    [`ridp://h:12345678901234567890/${RID}`, /port 12345678901234567890 is out of range/],
    [`ridp://h:http/${RID}`, /port "http" is not a number/],
    [`ridp://h/${RID}`, /missing port/],
    [`ridp://h:/${RID}`, /missing port/],
    [`ridp://:80/${RID}`, /missing host/],
    ['', /missing host and port/],
    [`ridp://::1:80/${RID}`, /IPv6 addresses must be in brackets, e\.g\. \[::1\]:80/],
    [`ridp://[::1:80/${RID}`, /missing "\]" after the IPv6 address/],
    [`ridp://[::g]:80/${RID}`, /host "::g" is not a valid IPv6 address/],
    [`ridp://[::1]80/${RID}`, /unexpected "80" after the IPv6 address/],
    [`ridp://[]:80/${RID}`, /empty IPv6 address/],
    [`ridp://999.1.1.1:80/${RID}`, /host "999\.1\.1\.1" is not a valid IPv4 address/],
    [`ridp://bad host:80/${RID}`, /host "bad host" is not a valid host name \(bad label "bad host"\)/],
    [`ridp://-a.b:80/${RID}`, /bad label "-a"/],
    [`ridp://a..b:80/${RID}`, /bad label ""/],
    ['ridp://h:80/abc', /bad routing id "abc": expected 32 hex characters, got 3/],
    [`ridp://h:80/${RID.slice(0, 31)}x`, /bad routing id "[0-9a-f]{31}x": "x" at position 32 is not a hex digit/],
    [`ridp://h:80/${RID}/more`, /unexpected path "\/more" after the routing id/],
    [`http://h:80/${RID}`, /unknown scheme "http" \(only ridp:\/\/ is supported\)/],
    [`ridp://abc@h:80/${RID}`, /bad proxy routing id "abc" before "@"/],
    [`ridp://${'00'.repeat(16)}@h:80/${RID}`, /the proxy routing id before "@" is the null routing id/],
    [`ridp://${RID}@h:80`, /must name the destination routing id too/],
    ['ridp:///', /an endpoint without an address must name a routing id/],
    [`ridp:///${'00'.repeat(16)}`, /an endpoint without an address must name a routing id that is not the null one/],
    [`ridp://${RID}@/${RID}`, /missing host and port/],
    ['ridp://', /missing host and port/],
  ];
  for (const [input, message] of bad) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      const err = errorOf(() => Endpoint.parse(input));
      expect(err.code).toBe('ERR_INVALID_ENDPOINT');
      expect(err.message).toMatch(message);
      expect(err.message.startsWith(`invalid endpoint ${JSON.stringify(input)}: `)).toBe(true);
      expect(err.message.endsWith(`; ${FORM}`)).toBe(true);
    });
  }

  it('quotes very long input only in part', () => {
    const err = errorOf(() => Endpoint.parse(`ridp://h:1/${'z'.repeat(5000)}`));
    expect(err.message.length).toBeLessThan(600);
  });

  it('rejects bad constructor arguments', () => {
    expect(errorOf(() => new Endpoint('h', 0, RoutingId.NULL)).code).toBe('ERR_INVALID_ENDPOINT');
    expect(errorOf(() => new Endpoint('h', 1.5, RoutingId.NULL)).message).toMatch(/port 1.5 is out of range/);
    expect(errorOf(() => new Endpoint('', 1, RoutingId.NULL)).message).toMatch(/missing host/);
    expect(errorOf(() => new Endpoint('h', 1, 'x' as unknown as RoutingId)).message).toMatch(/routing ids must be RoutingIds/);
    expect(errorOf(() => new Endpoint('', 0, RoutingId.NULL)).message).toMatch(/without an address must name a routing id/);
    expect(errorOf(() => new Endpoint('', 0, RoutingId.parse(RID), RoutingId.parse(RID))).message).toMatch(/without an address cannot name a proxy/);
  });
});

describe('parseAddress', () => {
  it('accepts host:port, [v6]:port and port', () => {
    expect(parseAddress('127.0.0.1:3000')).toEqual({ host: '127.0.0.1', port: 3000 });
    expect(parseAddress('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseAddress('localhost:65535')).toEqual({ host: 'localhost', port: 65535 });
    expect(parseAddress('9000', '0.0.0.0')).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(parseAddress(':9000', '127.0.0.1')).toEqual({ host: '127.0.0.1', port: 9000 });
  });

  it('round-trips any host and port', () => {
    fc.assert(
      fc.property(hostArb, fc.integer({ min: 0, max: 65535 }), (host, port) => {
        const text = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
        const parsed = parseAddress(text);
        expect(parsed.port).toBe(port);
        expect(parsed.host).toBe(new Endpoint(host, 1, RoutingId.NULL).host);
      }),
      { numRuns: 200 },
    );
  });

  const bad: Array<[string, string | undefined, RegExp]> = [
    ['9000', undefined, /missing host/],
    ['h:65536', undefined, /port 65536 is out of range \(0-65535\)/],
    ['h', undefined, /missing port/],
    ['::1', undefined, /IPv6 addresses must be in brackets/],
    ['h:-1', undefined, /port "-1" is not a number/],
    ['', '127.0.0.1', /missing host and port/],
  ];
  for (const [input, defaultHost, message] of bad) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      const err = errorOf(() => parseAddress(input, defaultHost));
      expect(err.code).toBe('ERR_INVALID_ADDRESS');
      expect(err.message).toMatch(message);
      expect(err.message).toMatch(/; expected host:port, \[ipv6\]:port or port$/);
    });
  }
});
