import { describe, expect, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import { checkPowerSpec, redact } from './driver.ts';
import { classifyIpmiFailure, ipmitoolArgs, parseIpmiAddress, parsePowerStatus } from './ipmi.ts';
import { bootOrderCommands, powerFromRunState } from './lab.ts';
import { splitLines } from './qmp.ts';
import {
  bootOverrideBody,
  parseRedfishAddress,
  pickResetType,
  powerFromRedfish,
} from './redfish.ts';
import { actionMessage } from './controller.ts';

const node = (power: Node['spec']['power']): Node => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Node',
  metadata: { name: 'n1.lab.example.com' },
  spec: power ? { power } : {},
});

describe('ipmi', () => {
  it.each([
    ['10.0.0.5', { host: '10.0.0.5', port: 623 }],
    ['bmc1.example.com:6230', { host: 'bmc1.example.com', port: 6230 }],
    ['[fd00::5]:623', { host: 'fd00::5', port: 623 }],
    ['[fd00::5]', { host: 'fd00::5', port: 623 }],
  ])('parses address %s', (a, want) => {
    expect(parseIpmiAddress(a)).toEqual(want);
  });

  it.each(['', 'host:99999', 'a b', 'http://x', '-H evil'])('refuses address %j', (a) => {
    expect(() => parseIpmiAddress(a)).toThrow(/ipmi address/);
  });

  it('never puts the password on the command line', () => {
    const args = ipmitoolArgs('127.0.0.1:6230', 'admin', ['chassis', 'power', 'on']);
    expect(args).toEqual([
      '-I',
      'lanplus',
      '-H',
      '127.0.0.1',
      '-p',
      '6230',
      '-U',
      'admin',
      '-E',
      '-N',
      '2',
      '-R',
      '3',
      '-C',
      '17',
      'chassis',
      'power',
      'on',
    ]);
  });

  it.each([
    ['Chassis Power is on\n', 'on'],
    ['Chassis Power is off\n', 'off'],
    ['garbage', 'unknown'],
  ] as const)('parses status %j', (out, want) => {
    expect(parsePowerStatus(out)).toBe(want);
  });

  it('classifies failures', () => {
    expect(classifyIpmiFailure('Error: Unable to establish IPMI v2 / RMCP+ session').kind).toBe(
      'unreachable',
    );
    expect(classifyIpmiFailure('RAKP 2 HMAC is invalid').kind).toBe('auth');
    expect(classifyIpmiFailure('Set Chassis Power Control to Cycle failed').kind).toBe('refused');
  });
});

describe('redfish', () => {
  it('parses addresses', () => {
    expect(parseRedfishAddress('https://bmc:8443')).toEqual({ base: 'https://bmc:8443' });
    expect(parseRedfishAddress('https://bmc/redfish/v1/')).toEqual({ base: 'https://bmc' });
    expect(parseRedfishAddress('https://bmc/redfish/v1/Systems/abc')).toEqual({
      base: 'https://bmc',
      system: '/redfish/v1/Systems/abc',
    });
  });
  it.each([
    ['http://bmc', /must use https/],
    ['https://root:pw@bmc', /must not carry a user name/],
    ['https://bmc/other', /not a ComputerSystem/],
    ['bmc', /not a URL/],
  ])('refuses %s', (a, re) => {
    expect(() => parseRedfishAddress(a)).toThrow(re);
  });
  it('maps power states and reset types', () => {
    expect(powerFromRedfish('On')).toBe('on');
    expect(powerFromRedfish('PoweringOff')).toBe('off');
    expect(powerFromRedfish(null)).toBe('unknown');
    expect(pickResetType('off', undefined)).toBe('ForceOff');
    expect(pickResetType('off', ['On', 'GracefulShutdown'])).toBe('GracefulShutdown');
    expect(pickResetType('cycle', ['On', 'ForceOff', 'PowerCycle'])).toBe('PowerCycle');
    expect(bootOverrideBody('network')).toEqual({
      Boot: { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once' },
    });
    expect(bootOverrideBody('disk').Boot['BootSourceOverrideTarget']).toBe('Hdd');
  });
});

describe('lab (QMP)', () => {
  it('maps run states', () => {
    expect(powerFromRunState('running')).toBe('on');
    expect(powerFromRunState('paused')).toBe('off');
    // Started with -S and not yet let run: no instruction executed, as a machine without power.
    expect(powerFromRunState('prelaunch')).toBe('off');
    expect(powerFromRunState('shutdown')).toBe('off');
    expect(powerFromRunState(3)).toBe('unknown');
  });
  it('never gives two devices one boot index', () => {
    const cmds = bootOrderCommands('network', { network: 2, disk: 1 });
    expect(cmds.map((c) => [c.arguments?.['path'], c.arguments?.['value']])).toEqual([
      ['/machine/peripheral/disk0', 9],
      ['/machine/peripheral/net0', 1],
      ['/machine/peripheral/disk0', 2],
    ]);
    // Already so: nothing to set (QEMU refuses an index the device itself holds).
    expect(bootOrderCommands('network', { network: 1, disk: 2 })).toEqual([]);
    expect(bootOrderCommands('disk', { disk: 1 })).toEqual([]);
    expect(bootOrderCommands('disk', { disk: -1 })).toHaveLength(1);
  });
  it('reaches any boot order from any other as QEMU allows it', () => {
    // QEMU's rule: a device may not take an index that any device holds, itself included.
    const values = [-1, 1, 2, 8, 9, 10];
    for (const first of ['network', 'disk'] as const)
      for (const n of values)
        for (const d of values) {
          if (n === d && n !== -1) continue;
          for (const current of [{ network: n, disk: d }, { network: n }, { disk: d }]) {
            if (!(first in current)) continue; // the driver refuses a device the VM lacks
            const state = new Map(Object.entries(current));
            const name = (path: unknown): string =>
              String(path).endsWith('net0') ? 'network' : 'disk';
            for (const c of bootOrderCommands(first, current)) {
              const v = c.arguments?.['value'] as number;
              expect([...state.values()], JSON.stringify({ first, current, c })).not.toContain(v);
              state.set(name(c.arguments?.['path']), v);
            }
            const other = first === 'network' ? 'disk' : 'network';
            expect(state.get(first)).toBe(1);
            if (state.has(other)) expect(state.get(other)).toBe(2);
          }
        }
  });
  it('splits QMP lines', () => {
    expect(splitLines('{"a":1}\n{"b"')).toEqual({ lines: ['{"a":1}'], rest: '{"b"' });
  });
});

describe('spec.power', () => {
  it('asks for what is missing', () => {
    expect(checkPowerSpec(node(undefined))).toMatchObject({ ok: false });
    expect(checkPowerSpec(node({ driver: 'ipmi', address: 'bmc' }))).toMatchObject({
      ok: false,
      message: expect.stringMatching(/credentialsSecret is required/) as unknown,
    });
    expect(checkPowerSpec(node({ driver: 'redfish' }))).toMatchObject({
      ok: false,
      message: expect.stringMatching(/address is required/) as unknown,
    });
    expect(checkPowerSpec(node({ driver: 'ssh' }))).toMatchObject({ ok: true });
  });

  it('redacts credentials from text', () => {
    const c = { username: 'admin', password: 'hunter22' };
    expect(redact('user admin password hunter22 failed', c)).toBe(
      'user [redacted] password [redacted] failed',
    );
  });

  it('says what an action did', () => {
    expect(actionMessage('setNextBoot', 'ipmi', '10.0.0.5', 'network')).toBe(
      'next boot from network via ipmi (10.0.0.5)',
    );
    expect(actionMessage('cycle', 'ssh', undefined)).toBe('rebooted over SSH');
  });
});
