import { describe, expect, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import {
  discoveredName,
  humanBytes,
  parseRegistration,
  planRegistration,
  variantShortfall,
} from './register.ts';

const node = (name: string, macs: string[]): Node => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Node',
  metadata: { name },
  spec: { macs },
});

const reg = (mac: string, nics: string[] = []) =>
  parseRegistration(
    JSON.stringify({
      mac,
      hardware: {
        cpus: 2,
        memoryBytes: 536870912,
        nics: nics.map((m, i) => ({ name: `eth${i}`, mac: m })),
      },
    }),
  );

describe('parseRegistration', () => {
  it('accepts the agent body and checks hardware against the CRD schema', () => {
    const r = parseRegistration(
      JSON.stringify({
        mac: '52:54:00:AA:00:01',
        address: '10.0.0.5',
        agent: 'abc',
        hardware: {
          cpus: 1,
          cpuModel: 'QEMU Virtual CPU',
          memoryBytes: 512 * 1024 * 1024,
          disks: [
            { name: 'vda', sizeBytes: 1073741824, model: '', serial: 'S1', removable: false },
          ],
          nics: [{ name: 'eth0', mac: '52:54:00:aa:00:01', driver: 'virtio_net', link: true }],
          dmi: { vendor: 'QEMU', product: 'Standard PC', serial: '' },
        },
      }),
    );
    expect(r.mac).toBe('52:54:00:aa:00:01');
    expect(r.hardware.disks?.[0]?.serial).toBe('S1');
  });

  it.each([
    ['not json', 'the body must be JSON'],
    ['[]', 'must be a JSON object'],
    ['{"mac":"zz"}', 'mac must be a MAC address'],
    ['{"mac":"52:54:00:00:00:01","hardware":{"cpus":"two"}}', 'hardware/cpus must be integer'],
    ['{"mac":"52:54:00:00:00:01","hardware":{"extra":1}}', 'must NOT have additional properties'],
    ['{"mac":"52:54:00:00:00:01","hardware":{"memory":"1Gi"}}', 'set by the server'],
    [
      '{"mac":"52:54:00:00:00:01","hardware":{"nics":[{"name":"e","mac":"XX"}]}}',
      'hardware/nics/0/mac must match pattern',
    ],
  ])('refuses %s', (body, msg) => {
    expect(() => parseRegistration(body)).toThrow(msg);
  });
});

describe('planRegistration', () => {
  const domain = 'lab.example.com';
  it('creates d<mac>.<domain> for a new MAC, with every NIC MAC', () => {
    expect(
      planRegistration({
        reg: reg('52:54:00:00:00:01', ['52:54:00:00:00:01', '52:54:00:00:00:02']),
        domain,
        owners: new Map(),
        token: 'none',
        fromOwnAddress: false,
      }),
    ).toEqual({
      action: 'create',
      name: discoveredName('52:54:00:00:00:01', domain),
      macs: ['52:54:00:00:00:01', '52:54:00:00:00:02'],
    });
    expect(discoveredName('52:54:00:00:00:01', domain)).toBe('d52-54-00-00-00-01.lab.example.com');
  });

  it('updates the owner when it comes from its address or with its token', () => {
    const n = node('n1.lab.example.com', ['52:54:00:00:00:01']);
    const owners = new Map([['52:54:00:00:00:01', n]]);
    for (const [token, fromOwnAddress] of [
      ['none', true],
      ['valid', false],
    ] as const)
      expect(
        planRegistration({ reg: reg('52:54:00:00:00:01'), domain, owners, token, fromOwnAddress }),
      ).toMatchObject({ action: 'update', name: 'n1.lab.example.com' });
  });

  it('refuses a wrong token, a foreign address, MACs of two Nodes, a token for a new MAC', () => {
    const a = node('a.lab.example.com', ['52:54:00:00:00:01']);
    const b = node('b.lab.example.com', ['52:54:00:00:00:02']);
    const one = new Map([['52:54:00:00:00:01', a]]);
    const p = (o: Partial<Parameters<typeof planRegistration>[0]>) =>
      planRegistration({
        reg: reg('52:54:00:00:00:01'),
        domain,
        owners: one,
        token: 'none',
        fromOwnAddress: false,
        ...o,
      });
    expect(p({ token: 'invalid', fromOwnAddress: true })).toMatchObject({ status: 401 });
    expect(p({})).toMatchObject({ status: 403 });
    expect(
      p({
        reg: reg('52:54:00:00:00:01', ['52:54:00:00:00:02']),
        owners: new Map([
          ['52:54:00:00:00:01', a],
          ['52:54:00:00:00:02', b],
        ]),
        token: 'valid',
      }),
    ).toMatchObject({ status: 409 });
    expect(
      p({
        reg: reg('52:54:00:00:00:09', ['52:54:00:00:00:02']),
        owners: new Map([['52:54:00:00:00:02', b]]),
      }),
    ).toMatchObject({ status: 409 });
    expect(p({ owners: new Map(), token: 'invalid' })).toMatchObject({ status: 401 });
  });
});

describe('humanBytes', () => {
  it.each([
    [0, '0'],
    [1536, '1.5Ki'],
    [536870912, '512Mi'],
    [16_743_333_888, '15.6Gi'],
  ])('%d → %s', (n, s) => {
    expect(humanBytes(n)).toBe(s);
  });
});

describe('variantShortfall', () => {
  const reg = (variant: string, hw: object) =>
    parseRegistration(JSON.stringify({ mac: '52:54:00:00:00:01', variant, hardware: hw }));
  const disk = { name: 'vda', sizeBytes: 1 << 30 };
  const ahci = { address: '0000:00:1f.2', class: '010601', vendor: '8086', device: '2922' };
  const e1000 = { address: '0000:00:03.0', class: '020000', vendor: '8086', device: '100e' };
  it('sends back a machine whose disks or NICs the variant cannot see', () => {
    expect(variantShortfall(reg('virtio', { disks: [], unclaimed: [ahci] }))).toBe(
      'kernel variant virtio sees no disk and has no driver for storage controller 0000:00:1f.2 (8086:2922)',
    );
    expect(variantShortfall(reg('virtio', { disks: [disk], unclaimed: [e1000] }))).toMatch(
      /no driver for network controller 0000:00:03.0 \(8086:100e\)/,
    );
  });
  it('keeps one that sees its disks beside an empty controller, and never judges the own kernel', () => {
    expect(variantShortfall(reg('virtio', { disks: [disk], unclaimed: [ahci] }))).toBeUndefined();
    expect(variantShortfall(reg('', { disks: [], unclaimed: [ahci, e1000] }))).toBeUndefined();
  });
  it('refuses a variant name that is not one', () => {
    expect(() => reg('Virt IO', {})).toThrow(/variant must be/);
    expect(() => reg(3 as never, {})).toThrow(/variant must be/);
  });
});
