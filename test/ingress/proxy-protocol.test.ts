import { describe, expect, it } from 'vitest';
import { V2_SIGNATURE, parseSocketAddress, proxyHeader } from '../../src/tunnel/proxy-protocol.js';

describe('PROXY protocol header', () => {
  it('v1: the text line of proxy-protocol.txt 2.1', () => {
    // The examples of the spec, section 2.1.
    expect(proxyHeader('v1', { address: '255.255.255.255', port: 65535 }, { address: '255.255.255.255', port: 65535 }).toString('latin1')).toBe(
      'PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n',
    );
    expect(proxyHeader('v1', { address: '192.168.0.1', port: 56324 }, { address: '192.168.0.11', port: 443 }).toString('latin1')).toBe('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n');
    expect(proxyHeader('v1', { address: '2001:db8::1', port: 40000 }, { address: '::1', port: 8080 }).toString('latin1')).toBe('PROXY TCP6 2001:db8::1 ::1 40000 8080\r\n');
    expect(proxyHeader('v1').toString('latin1')).toBe('PROXY UNKNOWN\r\n');
    // The longest line the spec allows is 107 bytes.
    const longest = proxyHeader('v1', { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 }, { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 });
    expect(longest.length).toBe(104);
    expect(longest.length).toBeLessThanOrEqual(107);
  });

  it('v2: the binary header, byte for byte as haproxy writes it', () => {
    // haproxy's own header for 172.19.0.1:42578 -> 172.19.0.3:80 (ver_cmd 0x21, TCP over IPv4, 12 address bytes).
    expect(proxyHeader('v2', { address: '172.19.0.1', port: 42578 }, { address: '172.19.0.3', port: 80 }).toString('hex')).toBe(
      '0d0a0d0a000d0a515549540a' + '21' + '11' + '000c' + 'ac130001' + 'ac130003' + 'a652' + '0050',
    );
    const v6 = proxyHeader('v2', { address: '2001:db8::1', port: 1 }, { address: '::ffff:10.0.0.1', port: 2 });
    expect(v6.subarray(0, 12).equals(V2_SIGNATURE)).toBe(true);
    expect(v6.subarray(12, 16).toString('hex')).toBe('21210024');
    expect(v6.subarray(16, 32).toString('hex')).toBe('20010db8000000000000000000000001');
    // An IPv4-mapped address is IPv4 on its own, and mapped again when the other one is IPv6.
    expect(v6.subarray(32, 48).toString('hex')).toBe('00000000000000000000ffff0a000001');
    expect(v6.subarray(48).toString('hex')).toBe('00010002');
    expect(v6.length).toBe(16 + 36);
    // No addresses: command LOCAL, family UNSPEC, no address block.
    expect(proxyHeader('v2').toString('hex')).toBe('0d0a0d0a000d0a515549540a' + '20' + '00' + '0000');
  });

  it('writes a dual-stack listener\'s IPv4-mapped source as IPv4', () => {
    expect(proxyHeader('v1', { address: '::ffff:203.0.113.9', port: 5000 }, { address: '127.0.0.1', port: 3000 }).toString('latin1')).toBe('PROXY TCP4 203.0.113.9 127.0.0.1 5000 3000\r\n');
  });

  it('says UNKNOWN for an address that is no IP', () => {
    expect(proxyHeader('v1', { address: 'unknown', port: 0 }, { address: '127.0.0.1', port: 1 }).toString('latin1')).toBe('PROXY UNKNOWN\r\n');
  });

  it('reads the origin message\'s client address', () => {
    expect(parseSocketAddress('203.0.113.9:5000')).toEqual({ address: '203.0.113.9', port: 5000 });
    expect(parseSocketAddress('[2001:db8::1]:443')).toEqual({ address: '2001:db8::1', port: 443 });
    expect(parseSocketAddress('unknown')).toBeUndefined();
    expect(parseSocketAddress('host.example:80')).toBeUndefined();
    expect(parseSocketAddress('1.2.3.4:70000')).toBeUndefined();
  });
});
