import { describe, expect, it } from 'vitest';
import type { NetworkConfig } from './backend.ts';
import { renderRadvdConf } from './radvd.ts';

const net: NetworkConfig = {
  name: 'admin',
  subnet: '192.168.124.0/24',
  dns: [],
  ntp: [],
  search: [],
  routes: [],
  v6prefix: 'fd00:1:2:3::/64',
  dns6: ['fd00:1:2:3::1'],
};
const ra = { iface: 'br0', defaultRouter: false, maxIntervalSeconds: 30 };

describe('radvd.conf from a Network', () => {
  it('M and O flags, the prefix on-link and not for SLAAC, no default route, RDNSS', () => {
    const c = renderRadvdConf(net, ra) ?? '';
    expect(c).toContain('interface br0 {');
    expect(c).toContain('AdvManagedFlag on;');
    expect(c).toContain('AdvOtherConfigFlag on;');
    expect(c).toMatch(/prefix fd00:1:2:3::\/64 \{\s+AdvOnLink on;\s+AdvAutonomous off;/);
    expect(c).toContain('AdvDefaultLifetime 0;');
    expect(c).toContain('RDNSS fd00:1:2:3::1 {');
    expect(c).toContain('MaxRtrAdvInterval 30;');
    expect(c).toContain('MinRtrAdvInterval 10;');
  });

  it('a default router when asked; intervals kept within radvd’s bounds', () => {
    const c = renderRadvdConf(net, { ...ra, defaultRouter: true, maxIntervalSeconds: 1 }) ?? '';
    expect(c).toContain('MaxRtrAdvInterval 4;');
    expect(c).toContain('MinRtrAdvInterval 3;');
    expect(c).toContain('AdvDefaultLifetime 12;');
  });

  it('no M and O flags on a link without DHCPv6: clients stop at the advertisement', () => {
    const c = renderRadvdConf(net, { ...ra, dhcp6: false }) ?? '';
    expect(c).toContain('AdvManagedFlag off;');
    expect(c).toContain('AdvOtherConfigFlag off;');
    expect(c).toMatch(/prefix fd00:1:2:3::\/64 \{\s+AdvOnLink on;\s+AdvAutonomous off;/);
  });

  it('nothing without a prefix, for a network that is off, or for a prefix that is not one', () => {
    const noPrefix: NetworkConfig = { ...net };
    delete noPrefix.v6prefix;
    expect(renderRadvdConf(noPrefix, ra)).toBeUndefined();
    expect(renderRadvdConf({ ...net, mode: 'off' }, ra)).toBeUndefined();
    expect(renderRadvdConf({ ...net, v6prefix: 'fd00::/64; };' }, ra)).toBeUndefined();
    expect(() => renderRadvdConf(net, { ...ra, iface: 'br0 { }' })).toThrow(/interface/);
  });
});
