import { describe, expect, it } from 'vitest';
import { makeAcl } from './acl.ts';
import { loadConfig, parseHostPort } from './config.ts';

describe('configuration', () => {
  it('reads flags, repeated and comma separated, over the environment', () => {
    const c = loadConfig(
      [
        '--domain=Lab.Crowbar.Dev.',
        '--listen=127.0.0.1:5353',
        '--listen=[::1]:5353',
        '--nameserver=ns1.lab.crowbar.dev=192.168.124.2,fd00::2',
        '--notify=10.0.0.1,10.0.0.2:5300',
        '--allow-transfer=10.0.0.0/8,::1',
        '--ttl=60',
        '--source=file:/tmp/x.yaml',
      ],
      { CROWBAR_DNS_DOMAIN: 'ignored.example', CROWBAR_DNS_STATE_FILE: '/var/lib/dns.json' },
    );
    expect(c.dns.forwardZones).toEqual(['lab.crowbar.dev']);
    expect(c.listen).toEqual([
      { host: '127.0.0.1', port: 5353 },
      { host: '::1', port: 5353 },
    ]);
    expect(c.dns.nameservers).toEqual([
      { name: 'ns1.lab.crowbar.dev', addresses: ['192.168.124.2', 'fd00::2'] },
    ]);
    expect(c.notify).toEqual([
      { host: '10.0.0.1', port: 53 },
      { host: '10.0.0.2', port: 5300 },
    ]);
    expect(c.allowTransfer('10.1.2.3')).toBe(true);
    expect(c.allowTransfer('::1')).toBe(true);
    expect(c.allowTransfer('192.168.1.1')).toBe(false);
    expect(c.dns.ttl).toBe(60);
    expect(c.dns.hostmaster).toBe('hostmaster.lab.crowbar.dev');
    expect(c.source).toEqual({ kind: 'file', path: '/tmp/x.yaml' });
    expect(c.stateFile).toBe('/var/lib/dns.json');
  });

  it('takes the environment when no flag is given, with defaults for the rest', () => {
    const c = loadConfig([], {
      CROWBAR_DNS_DOMAIN: 'lab.crowbar.dev',
      CROWBAR_DNS_NAMESERVERS: 'ns1.lab.crowbar.dev=10.0.0.1;ns2.lab.crowbar.dev=10.0.0.2',
    });
    expect(c.dns.nameservers.map((n) => n.name)).toEqual([
      'ns1.lab.crowbar.dev',
      'ns2.lab.crowbar.dev',
    ]);
    expect(c.listen).toEqual([{ host: '0.0.0.0', port: 53 }]);
    expect(c.source).toEqual({ kind: 'kube' });
    expect(c.allowTransfer('127.0.0.1')).toBe(false);
  });

  it('says what to fix', () => {
    expect(() => loadConfig([], {})).toThrow(/--domain .* is required/);
    expect(() => loadConfig(['--domain=a_b.test'], {})).toThrow(/not a domain name/);
    expect(() => loadConfig(['--domain=x.test', '--bogus=1'], {})).toThrow(/unknown argument/);
    expect(() => loadConfig(['--domain=x.test', '--listen=localhost:53'], {})).toThrow(
      /--listen must be an IP address/,
    );
    expect(() => loadConfig(['--domain=x.test', '--nameserver=ns1=not-an-ip'], {})).toThrow(
      /--nameserver must be name=address/,
    );
    expect(() => loadConfig(['--domain=x.test', '--ttl=-1'], {})).toThrow(/--ttl must be/);
    expect(() => loadConfig(['--domain=x.test', '--allow-transfer=nope'], {})).toThrow(
      /--allow-transfer/,
    );
    expect(() => parseHostPort('1.2.3.4:99999', 53, '--notify')).toThrow(/--notify/);
  });
});

describe('transfer ACL', () => {
  it('matches prefixes and single addresses, IPv4-mapped IPv6 as IPv4', () => {
    const acl = makeAcl(['192.168.124.0/24', '10.0.0.5', 'fd00::/8']);
    expect(acl('192.168.124.200')).toBe(true);
    expect(acl('::ffff:192.168.124.7')).toBe(true);
    expect(acl('10.0.0.5')).toBe(true);
    expect(acl('10.0.0.6')).toBe(false);
    expect(acl('fd12::1')).toBe(true);
    expect(acl('2001:db8::1')).toBe(false);
    expect(acl('garbage')).toBe(false);
    expect(makeAcl([])('127.0.0.1')).toBe(false);
  });
});
