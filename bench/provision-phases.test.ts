import { describe, expect, it } from 'vitest';
import { cleanConsoleLine, medianPhases, stampLines, vmPhases } from './provision-phases.ts';

const at = (t: number, cpu: number, text: string) => ({ t, cpu, text });

describe('stampLines', () => {
  it('stamps complete lines and keeps the rest for the next read', () => {
    const a = stampLines('', 'iPXE 1.0\r\nConfig', { t: 1, cpu: 0.5 });
    expect(a.lines).toEqual([at(1, 0.5, 'iPXE 1.0')]);
    expect(a.rest).toBe('Config');
    const b = stampLines(a.rest, 'uring (net0 x)... ok\r\n', { t: 17, cpu: 1 });
    expect(b.lines).toEqual([at(17, 1, 'Configuring (net0 x)... ok')]);
  });

  it('drops ANSI escapes and backspaced spinners', () => {
    expect(cleanConsoleLine('\x1b[1m\x1b[37miPXE 1.0\x1b[0m\r')).toBe('iPXE 1.0');
    expect(cleanConsoleLine('Press Ctrl-B...\x08 \x08\x08 \x08net0: up')).toBe(
      'Press Ctrl-B..net0: up',
    );
  });
});

describe('vmPhases', () => {
  const lines = [
    at(1, 0.2, 'iPXE 1.0.0+ -- Open Source Network Boot Firmware'),
    at(17, 0.9, 'Configuring (net0 52:54:00:be:0e:00)...... ok'),
    at(18, 1.2, 'http://10.0.0.2:8080/ipxe/52%3A54... ok'),
    at(22, 3.0, 'http://10.0.0.2:8080/files/disc/vmlinuz... ok'),
    at(25, 4.0, 'http://10.0.0.2:8080/files/disc/initrd.gz... ok'),
    at(26, 4.4, 'http://10.0.0.2:8080/ca/crowbar-ca.cpio.gz... ok'),
    // The kernel's clock started at 46 - 10 = 36.
    at(46, 14.4, '[10.00] crowbar-discovery: agent started'),
    at(48, 15.0, '[12.00] crowbar-discovery: modules loaded'),
    at(
      50,
      16.0,
      '[14.00] crowbar-discovery: interface eth0 mac 52:54:00:be:0e:00 address 10.0.0.100',
    ),
    at(52, 17.0, '[16.00] crowbar-discovery: registering with https://10.0.0.1:1'),
    at(55, 18.0, '[19.00] crowbar-discovery: registered as d52.example.com'),
    at(56, 18.5, '[20.00] crowbar-discovery: sshd started'),
    at(58, 19.0, '[22.00] crowbar-discovery: address 10.0.0.160/24 on the provisioning network'),
    at(60, 20.0, '[24.00] crowbar-discovery: alive: d52.example.com at 10.0.0.160'),
  ];

  it('splits a VM’s time at each marker, wall and CPU, then the API’s events', () => {
    const rows = vmPhases(lines, [
      { phase: 'run-start', at: { t: 61, cpu: 20.5 } },
      { phase: 'run-end', at: { t: 66, cpu: 22 } },
    ]);
    const byPhase = Object.fromEntries(rows.map((r) => [r.phase, r]));
    expect(rows.map((r) => r.phase)).toEqual([
      'firmware',
      'ipxe-netconf',
      'ipxe-script',
      'kernel-fetch',
      'initrd-fetch',
      'kernel-decompress',
      'kernel-boot',
      'modules',
      'dhcp',
      'facts',
      'register',
      'sshd',
      'address',
      'alive',
      'run-start',
      'run-end',
    ]);
    expect(byPhase['ipxe-netconf']).toMatchObject({ wall: 16 });
    // The last initrd line ends the downloads.
    expect(byPhase['initrd-fetch']).toMatchObject({ wall: 4 });
    // 26 → 36 before the kernel's clock, 36 → 46 its boot; CPU shared by wall time.
    expect(byPhase['kernel-decompress']?.wall).toBeCloseTo(10);
    expect(byPhase['kernel-decompress']?.cpu).toBeCloseTo(5);
    expect(byPhase['kernel-boot']?.wall).toBeCloseTo(10);
    expect(byPhase['kernel-boot']?.cpu).toBeCloseTo(5);
    expect(byPhase['run-end']).toMatchObject({ wall: 5, cpu: 1.5 });
    expect(rows.reduce((s, r) => s + r.wall, 0)).toBeCloseTo(66);
  });

  it('folds a missing marker into the next phase and skips API events before the console', () => {
    const rows = vmPhases(
      lines.filter((l) => !l.text.includes('modules loaded')),
      [{ phase: 'run-start', at: { t: 59, cpu: 19.5 } }],
    );
    expect(rows.find((r) => r.phase === 'modules')).toBeUndefined();
    expect(rows.find((r) => r.phase === 'dhcp')).toMatchObject({ wall: 4 });
    expect(rows.find((r) => r.phase === 'run-start')).toBeUndefined();
  });

  it('medians per phase over VMs', () => {
    const m = medianPhases([
      [{ phase: 'a', wall: 1, cpu: 1 }],
      [{ phase: 'a', wall: 3, cpu: 2 }],
      [
        { phase: 'a', wall: 10, cpu: 3 },
        { phase: 'b', wall: 2, cpu: undefined },
      ],
    ]);
    expect(m).toEqual([
      { phase: 'a', wall: 3, cpu: 2 },
      { phase: 'b', wall: 2, cpu: undefined },
    ]);
  });
});
