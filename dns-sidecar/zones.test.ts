import { describe, expect, it } from 'vitest';
import { ALLOCATIONS, CONFIG, NETWORKS, zoneSet } from './fixtures.test-helper.ts';
import { reverseV6, reverseZoneV6, reverseZonesV4 } from './names.ts';
import { clockSerial, nextSerial, serialFor, serialGreater } from './serial.ts';
import { T, buildZones, forwardName } from './zones.ts';
import { renderZone } from './zonefile.ts';

describe('reverse zones', () => {
  it('uses octet boundaries, splitting prefixes between them', () => {
    expect(reverseZonesV4('192.168.124.0/24').map((z) => z.origin)).toEqual([
      '124.168.192.in-addr.arpa',
    ]);
    expect(reverseZonesV4('10.0.0.0/8').map((z) => z.origin)).toEqual(['10.in-addr.arpa']);
    const z20 = reverseZonesV4('172.16.0.0/20').map((z) => z.origin);
    expect(z20).toHaveLength(16);
    expect(z20[0]).toBe('0.16.172.in-addr.arpa');
    expect(z20[15]).toBe('15.16.172.in-addr.arpa');
  });

  it('gives longer prefixes an RFC 2317 classless zone', () => {
    const [z] = reverseZonesV4('10.9.8.64/26');
    expect(z?.origin).toBe('64-26.8.9.10.in-addr.arpa');
    expect(z?.classless).toBe(true);
  });

  it('uses sixteen nibbles for a /64', () => {
    expect(reverseZoneV6('fd00:1:2:3::/64')?.origin).toBe(
      '3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa',
    );
    expect(reverseV6('fd00:1:2:3::51')).toBe(
      '1.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa',
    );
  });
});

describe('zone model', () => {
  const zones = zoneSet();

  it('has the forward zone and a reverse zone per network prefix', () => {
    expect([...zones.keys()].sort()).toEqual(
      [
        'lab.crowbar.dev',
        '124.168.192.in-addr.arpa',
        '3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa',
        '64-26.8.9.10.in-addr.arpa',
        '0.16.172.in-addr.arpa',
        '1.16.172.in-addr.arpa',
        '2.16.172.in-addr.arpa',
        '3.16.172.in-addr.arpa',
      ].sort(),
    );
  });

  it('names admin addresses by the node FQDN and others by <host>.<network>.<domain>', () => {
    const fwd = zones.get('lab.crowbar.dev')!;
    expect(
      fwd.names
        .get('node1.lab.crowbar.dev')
        ?.get(T.A)
        ?.map((r) => r.data),
    ).toEqual(['192.168.124.81']);
    expect(
      fwd.names
        .get('node1.lab.crowbar.dev')
        ?.get(T.AAAA)
        ?.map((r) => r.data),
    ).toEqual(['fd00:1:2:3::51']);
    expect(fwd.names.get('node1.bmc.lab.crowbar.dev')?.get(T.A)?.[0]?.data).toBe('10.9.8.70');
    expect(fwd.names.get('node1.storage.lab.crowbar.dev')?.get(T.A)?.[0]?.data).toBe('172.16.2.9');
    expect(forwardName(ALLOCATIONS[3]!, NETWORKS[1]!)).toBe('node1.bmc.lab.crowbar.dev');
  });

  it('has PTRs to the published names, empty non-terminals, NS and glue', () => {
    const rev = zones.get('124.168.192.in-addr.arpa')!;
    expect(rev.names.get('81.124.168.192.in-addr.arpa')?.get(T.PTR)?.[0]?.data).toBe(
      'node1.lab.crowbar.dev',
    );
    const classless = zones.get('64-26.8.9.10.in-addr.arpa')!;
    expect(classless.names.get('70.64-26.8.9.10.in-addr.arpa')?.get(T.PTR)?.[0]?.data).toBe(
      'node1.bmc.lab.crowbar.dev',
    );
    const fwd = zones.get('lab.crowbar.dev')!;
    expect(fwd.names.get('rack1.lab.crowbar.dev')?.size).toBe(0);
    expect(fwd.names.get('lab.crowbar.dev')?.get(T.NS)?.[0]?.data).toBe('ns1.lab.crowbar.dev');
    expect(fwd.names.get('ns1.lab.crowbar.dev')?.get(T.A)?.[0]?.data).toBe('192.168.124.2');
    const v6 = zones.get('3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa')!;
    expect(
      v6.names.get('0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa')?.size,
    ).toBe(0);
  });

  it('leaves out allocations on networks it does not know', () => {
    const zs = zoneSet(NETWORKS, [
      { network: 'nope', node: 'x.lab.crowbar.dev', address: '192.168.124.9', family: 'ipv4' },
    ]);
    expect(zs.get('lab.crowbar.dev')!.names.has('x.lab.crowbar.dev')).toBe(false);
  });

  it('digests content: same input same digest, any change a new one', () => {
    const d = (allocs = ALLOCATIONS) =>
      buildZones(CONFIG, NETWORKS, allocs).map((z) => [z.origin, z.digest] as const);
    expect(d()).toEqual(d());
    const before = new Map(d());
    const after = new Map(d(ALLOCATIONS.slice(1)));
    expect(after.get('lab.crowbar.dev')).not.toBe(before.get('lab.crowbar.dev'));
    expect(after.get('124.168.192.in-addr.arpa')).not.toBe(before.get('124.168.192.in-addr.arpa'));
    expect(after.get('64-26.8.9.10.in-addr.arpa')).toBe(before.get('64-26.8.9.10.in-addr.arpa'));
  });

  it('renders a master file with the SOA first', () => {
    const text = renderZone(zones.get('lab.crowbar.dev')!);
    const lines = text.trim().split('\n');
    expect(lines[0]).toBe('$ORIGIN lab.crowbar.dev.');
    expect(lines[1]).toMatch(/^lab\.crowbar\.dev\. 300 IN SOA ns1\.lab\.crowbar\.dev\. /);
    expect(text).toContain('node1.lab.crowbar.dev. 300 IN A 192.168.124.81');
  });
});

describe('serials', () => {
  it('compares in serial number arithmetic (RFC 1982)', () => {
    expect(serialGreater(2, 1)).toBe(true);
    expect(serialGreater(1, 2)).toBe(false);
    expect(serialGreater(0, 0xffffffff)).toBe(true);
    expect(serialGreater(5, 5)).toBe(false);
  });

  it('follows the clock and never goes back', () => {
    const t = Date.UTC(2026, 10, 30);
    const s1 = nextSerial(undefined, t);
    expect(s1).toBe(clockSerial(t));
    const s2 = nextSerial(s1, t); // same decisecond: one more
    expect(s2).toBe(s1 + 1);
    const s3 = nextSerial(s2, t - 60_000); // clock stepped back: still forward
    expect(serialGreater(s3, s2)).toBe(true);
    expect(nextSerial(s3, t + 1000)).toBe(clockSerial(t + 1000));
  });

  it('keeps the serial for unchanged content', () => {
    const prev = { serial: 77, digest: 'abc' };
    expect(serialFor(prev, 'abc', Date.now())).toBe(77);
    expect(serialGreater(serialFor(prev, 'def', Date.now()), 77)).toBe(true);
  });
});
