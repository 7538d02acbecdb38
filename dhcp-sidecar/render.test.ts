import { describe, expect, it } from 'vitest';
import type { BootEnvSpec } from '../generated/crowbar.ts';
import { DEFAULT_BOOTENVS } from './backend.ts';
import { parseRange } from './http.ts';
import {
  chooseKernel,
  discoveryName,
  fileUrl,
  ipxeScript,
  nodeFile,
  renderTemplate,
} from './render.ts';

const v = {
  name: 'n1.example.com',
  mac: '52:54:00:00:00:01',
  address: '10.0.0.5',
  server: '10.0.0.1',
  http: 'http://10.0.0.1:8080',
  bootEnv: 'sledgehammer',
};

describe('templates and scripts', () => {
  it('replaces variables and blanks unknown ones', () => {
    expect(renderTemplate('a={{ name }} b={{nope}}', { name: 'x' })).toBe('a=x b=');
  });
  it('locates files under /files/ unless given a URL', () => {
    expect(fileUrl('a/b', v.http)).toBe('http://10.0.0.1:8080/files/a/b');
    expect(fileUrl('https://x/y', v.http)).toBe('https://x/y');
    expect(discoveryName('52:54:00:00:00:01')).toBe('d52-54-00-00-00-01');
  });
  it('renders the discovery script and an exit for local', () => {
    const s = ipxeScript(DEFAULT_BOOTENVS['sledgehammer'], v);
    expect(s.split('\n')).toEqual([
      '#!ipxe',
      'echo Crowbar: n1.example.com boots sledgehammer',
      'kernel http://10.0.0.1:8080/files/sledgehammer/vmlinuz initrd=initrd.gz console=ttyS0,115200 quiet edd=off crowbar.mac=52:54:00:00:00:01 crowbar.variant= crowbar.server=10.0.0.1 crowbar.http=http://10.0.0.1:8080',
      'initrd http://10.0.0.1:8080/files/sledgehammer/initrd.gz',
      'boot',
      '',
    ]);
    expect(ipxeScript(DEFAULT_BOOTENVS['local'], v)).toMatch(/exit/);
    expect(nodeFile({ files: [{ name: 'seed', template: 'host={{name}}' }] }, 'seed', v)).toBe(
      'host=n1.example.com',
    );
  });
});

describe('the CA initrd in scripts', () => {
  const extra = { url: 'http://10.0.0.1:8080/ca/crowbar-ca.cpio.gz', name: 'crowbar-ca.cpio.gz' };
  it('comes after the BootEnv’s initrds and is named next to its initrd= argument', () => {
    const lines = ipxeScript(DEFAULT_BOOTENVS['sledgehammer'], v, extra).split('\n');
    expect(lines[2]).toMatch(/ initrd=initrd\.gz initrd=crowbar-ca\.cpio\.gz console=/);
    expect(lines.slice(3, 6)).toEqual([
      'initrd http://10.0.0.1:8080/files/sledgehammer/initrd.gz',
      `initrd ${extra.url}`,
      'boot',
    ]);
  });
  it('is offered as {{caInitrd}} to a BootEnv’s own script, which is not changed', () => {
    const env = { kernel: 'k', ipxeScript: '#!ipxe\ninitrd {{caInitrd}}\n' };
    expect(ipxeScript(env, v, extra)).toBe(`#!ipxe\ninitrd ${extra.url}\n`);
  });
  it('is not added to local boots', () => {
    expect(ipxeScript(DEFAULT_BOOTENVS['local'], v, extra)).not.toMatch(/crowbar-ca/);
  });
});

describe('HTTP Range (RFC 9110 §14)', () => {
  it.each([
    [undefined, undefined],
    ['bytes=0-9', { start: 0, end: 9 }],
    ['bytes=90-', { start: 90, end: 99 }],
    ['bytes=-5', { start: 95, end: 99 }],
    ['bytes=50-1000', { start: 50, end: 99 }],
    ['bytes=100-', 'bad'],
    ['bytes=9-1', 'bad'],
    ['bytes=-0', 'bad'],
    ['bytes=0-1,5-6', undefined],
  ] as const)('%s', (h, want) => {
    expect(parseRange(h, 100)).toEqual(want);
  });
});

describe('kernel variants', () => {
  const env: BootEnvSpec = {
    kernel: 'disc/vmlinuz',
    initrds: ['disc/initrd.gz'],
    kernelArgs: 'initrd={{initrd}} crowbar.variant={{variant}}',
    variants: [
      { name: 'virtio', nicVendors: ['1af4'], kernel: 'disc/vmlinuz-virt' },
      { name: 'virtio-own', nicVendors: ['1af4', '15ad'], kernel: 'v2', initrds: ['v2.img'] },
    ],
  };
  it('gives a virtio NIC the first matching variant, anything else the own kernel', () => {
    expect(chooseKernel(env, { pciNic: '1af4:1000' })).toEqual({
      kernel: 'disc/vmlinuz-virt',
      initrds: ['disc/initrd.gz'],
      variant: 'virtio',
    });
    expect(chooseKernel(env, { pciNic: '15ad:07b0' })).toEqual({
      kernel: 'v2',
      initrds: ['v2.img'],
      variant: 'virtio-own',
    });
    const own = { kernel: 'disc/vmlinuz', initrds: ['disc/initrd.gz'], variant: '' };
    expect(chooseKernel(env, { pciNic: '8086:100e' })).toEqual(own);
    expect(chooseKernel(env, {})).toEqual(own);
    expect(chooseKernel(env, { pciNic: 'zz' })).toEqual(own);
  });
  it('honours a Node with variants off, and skips a variant whose files are not there', () => {
    const own = { kernel: 'disc/vmlinuz', initrds: ['disc/initrd.gz'], variant: '' };
    expect(chooseKernel(env, { pciNic: '1af4:1000', variants: false })).toEqual(own);
    const noVirt = (loc: string) => loc !== 'disc/vmlinuz-virt';
    expect(chooseKernel(env, { pciNic: '1af4:1000' }, noVirt).variant).toBe('virtio-own');
    expect(chooseKernel(env, { pciNic: '1af4:1000' }, (l) => l.startsWith('disc/'))).toEqual({
      kernel: 'disc/vmlinuz-virt',
      initrds: ['disc/initrd.gz'],
      variant: 'virtio',
    });
    expect(chooseKernel(env, { pciNic: '1af4:1000' }, () => false)).toEqual(own);
  });
  it('renders the variant in the script and in {{variant}}', () => {
    const s = ipxeScript(env, { ...v, pciNic: '1af4:1041' });
    expect(s).toContain('boots sledgehammer (kernel variant virtio)');
    expect(s).toContain(
      'kernel http://10.0.0.1:8080/files/disc/vmlinuz-virt initrd=initrd.gz crowbar.variant=virtio',
    );
    const g = ipxeScript(env, { ...v, pciNic: '8086:10d3' });
    expect(g).toContain(
      'kernel http://10.0.0.1:8080/files/disc/vmlinuz initrd=initrd.gz crowbar.variant=\n',
    );
  });
});
