/**
 * The DHCP sidecar against the real API server and real clients (isc-dhcp-client's dhclient and
 * busybox udhcpc), in network namespaces this file creates: reservations with the network's
 * options, the discovery pool (also across a sidecar crash), RELEASE and DECLINE, boot options
 * from the Node's boot environment and its acknowledgement on the Node's status.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { createDhcpLab, type DhcpClientNs, type DhcpLab } from '../harness/dhcp-lab.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import type { Started } from '../harness/process.ts';
import { nsExec } from '../harness/netns.ts';

let lab: DhcpLab;
let client: CrowbarClient;
let sidecar: Started;
let uc2: DhcpClientNs;
const u = uid();
const network = `cbdhcp-${u}`;
const domain = `dhcp${u}.example.com`;
const FM = 'dhcp-test';

function envFile(path: string): Record<string, string> | undefined {
  if (!existsSync(path)) return undefined;
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** udhcpc's hook: record the environment of each event, configure the address. */
function udhcpcScript(): string {
  const path = join(lab.dir, 'udhcpc.sh');
  if (!existsSync(path)) {
    writeFileSync(
      path,
      [
        '#!/bin/sh',
        'case "$1" in',
        '  bound|renew)',
        '    env > "$OUT-$1.env"',
        '    ip -4 addr flush dev "$interface"',
        '    ip addr add "$ip/$mask" dev "$interface" ;;',
        '  deconfig) ip -4 addr flush dev "$interface" ;;',
        'esac',
        'exit 0',
        '',
      ].join('\n'),
    );
    chmodSync(path, 0o755);
  }
  return path;
}

async function udhcpc(c: DhcpClientNs, tag: string, args: string[] = []): Promise<string> {
  const out = join(lab.dir, `udhcpc-${tag}`);
  await c.exec(
    'env',
    [
      `OUT=${out}`,
      'busybox',
      'udhcpc',
      '-i',
      'eth0',
      '-n',
      '-q',
      '-f',
      '-t',
      '5',
      '-T',
      '1',
      '-A',
      '1',
      '-s',
      udhcpcScript(),
      ...args,
    ],
    30_000,
  );
  return out;
}

/**
 * udhcpc left running after it binds, then told to RELEASE (SIGUSR2): `-q -R` does not send a
 * RELEASE (busybox leaves before it records the BOUND state).
 */
async function udhcpcRelease(c: DhcpClientNs, tag: string): Promise<void> {
  const out = join(lab.dir, `udhcpc-${tag}`);
  const p = spawn(
    'ip',
    [
      'netns',
      'exec',
      c.ns,
      'env',
      `OUT=${out}`,
      'busybox',
      'udhcpc',
      '-i',
      'eth0',
      '-f',
      '-s',
      udhcpcScript(),
    ],
    { stdio: 'ignore' },
  );
  try {
    await eventually('udhcpc bound', () => envFile(`${out}-bound.env`), 15_000);
    const released = await metric('crowbar_dhcp_outcomes_total', 'outcome="released"');
    p.kill('SIGUSR2');
    await eventually(
      'RELEASE handled',
      async () => (await metric('crowbar_dhcp_outcomes_total', 'outcome="released"')) > released,
    );
  } finally {
    p.kill('SIGKILL');
  }
}

/** dhclient with a hook that records each reason's environment and configures the address. */
function dhclientFiles(c: DhcpClientNs): { script: string; lf: string; pf: string; out: string } {
  const base = join(lab.dir, `dhclient-${c.mac.replace(/:/g, '')}`);
  const script = `${base}.sh`;
  writeFileSync(
    script,
    [
      '#!/bin/sh',
      `env > "${base}-$reason.env"`,
      'case "$reason" in',
      '  BOUND|RENEW|REBOOT) ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;',
      'esac',
      'exit 0',
      '',
    ].join('\n'),
  );
  chmodSync(script, 0o755);
  return { script, lf: `${base}.leases`, pf: `${base}.pid`, out: base };
}

/** A counter from the sidecar's /metrics, read inside its own namespace. */
async function metric(name: string, labels: string): Promise<number> {
  const { stdout: text } = await nsExec(lab.serverNs, 'curl', [
    '-sS',
    '-m',
    '10',
    `http://${lab.serverIp}:8080/metrics`,
  ]);
  const line = text
    .split('\n')
    .find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function addNode(name: string, mac: string, bootEnv: string, last: number) {
  await client.create('Node', { metadata: { name }, spec: { macs: [mac], bootEnv } }, FM);
  const address = `${lab.net}.${last}`;
  await client.create(
    'NetworkAllocation',
    {
      metadata: { name: `${network}.${address.replace(/\./g, '-')}` },
      spec: { network, node: name, address: `${address}/24`, family: 'ipv4', range: 'host' },
    } as never,
    FM,
  );
  return address;
}

const KNOWN1 = '52:54:00:c1:00:01';
const KNOWN2 = '52:54:00:c1:00:02';
const node1 = `n1.${domain}`;
const node2 = `n2.${domain}`;

beforeAll(async () => {
  client = testClient();
  lab = await createDhcpLab();
  await client.create(
    'Network',
    {
      metadata: { name: network },
      spec: {
        category: 'admin',
        subnet: `${lab.net}.0/24`,
        router: { address: `${lab.net}.254` },
        ranges: [
          { name: 'host', first: `${lab.net}.10`, last: `${lab.net}.99` },
          { name: 'dhcp', first: `${lab.net}.100`, last: `${lab.net}.104` },
        ],
      },
    } as never,
    FM,
  );
  await addNode(node1, KNOWN1, 'local', 21);
  await addNode(node2, KNOWN2, 'sledgehammer', 22);
  sidecar = await lab.startSidecar({
    kubeconfig: inject('kubeconfig'),
    apiServer: inject('apiServer'),
    network,
    extraArgs: ['--dns', `${lab.net}.2`, '--ntp', `${lab.net}.3`, '--search', domain],
  });
});

afterAll(async () => {
  await lab.destroy();
  for (const n of [node1, node2]) await client.delete('Node', n).catch(() => undefined);
  await client.delete('Network', network).catch(() => undefined);
});

describe('dhcp sidecar with real clients', () => {
  it('dhclient gets its reservation and the network options', async () => {
    const c = await lab.addClient('dc1', KNOWN1);
    const f = dhclientFiles(c);
    await c.exec('dhclient', ['-1', '-v', '-sf', f.script, '-lf', f.lf, '-pf', f.pf, 'eth0']);
    const env = await eventually('dhclient BOUND', () => envFile(`${f.out}-BOUND.env`));
    expect(env['new_ip_address']).toBe(`${lab.net}.21`);
    expect(env['new_subnet_mask']).toBe('255.255.255.0');
    expect(env['new_routers']).toBe(`${lab.net}.254`);
    expect(env['new_domain_name_servers']).toBe(`${lab.net}.2`);
    expect(env['new_host_name']).toBe('n1');
    expect(env['new_domain_name']).toBe(domain);
    expect(env['new_dhcp_server_identifier']).toBe(lab.serverIp);
    expect(env['new_dhcp_lease_time']).toBe('3600');
    // RELEASE for a reservation: acknowledged silently, the address stays the node's.
    await c.exec('dhclient', ['-r', '-sf', f.script, '-lf', f.lf, '-pf', f.pf, 'eth0']);
    await eventually(
      'RELEASE counted',
      async () => (await metric('crowbar_dhcp_outcomes_total', 'type="RELEASE"')) >= 1,
    );
  });

  it('udhcpc gets its reservation, options and the boot file of its boot environment', async () => {
    uc2 = await lab.addClient('uc2', KNOWN2);
    const out = await udhcpc(uc2, 'k2', [
      '-V',
      'PXEClient:Arch:00000:UNDI:002001',
      '-x',
      '0x5d:0000',
      '-O',
      'ntpsrv',
      '-O',
      'search',
    ]);
    const env = envFile(`${out}-bound.env`);
    expect(env, lab.log().slice(-3000)).toBeDefined();
    expect(env!['ip']).toBe(`${lab.net}.22`);
    expect(env!['subnet']).toBe('255.255.255.0');
    expect(env!['router']).toBe(`${lab.net}.254`);
    expect(env!['dns']).toBe(`${lab.net}.2`);
    expect(env!['ntpsrv']).toBe(`${lab.net}.3`);
    expect(env!['search']).toBe(domain);
    expect(env!['serverid']).toBe(lab.serverIp);
    expect(env!['siaddr']).toBe(lab.serverIp);
    expect(env!['boot_file']).toBe('undionly.kpxe');
  });

  it('acknowledges each node boot environment once, and local means no boot options', async () => {
    const ack = (name: string) => async () => {
      const n = await client.get('Node', name);
      return n?.status?.bootEnv;
    };
    const n1 = await eventually('n1 acknowledged', ack(node1));
    expect(n1).toMatchObject({ applied: 'local', generation: 1, by: `sidecar-${lab.id}` });
    const n2 = await eventually('n2 acknowledged', ack(node2));
    expect(n2).toMatchObject({ applied: 'sledgehammer', generation: 1 });
    await client.mergePatch('Node', node2, { spec: { bootEnv: 'local' } }, FM);
    await eventually('n2 local acknowledged', async () => {
      const b = await ack(node2)();
      return b?.applied === 'local' && b.generation === 2;
    });
    const c = uc2;
    const out = await udhcpc(c, 'k2local', [
      '-V',
      'PXEClient:Arch:00000:UNDI:002001',
      '-x',
      '0x5d:0000',
    ]);
    const env = envFile(`${out}-bound.env`);
    expect(env!['ip']).toBe(`${lab.net}.22`);
    expect(env!['boot_file']).toBeUndefined();
    expect(env!['bootfile']).toBeUndefined();
    // one write per change: n1 once, n2 twice
    expect(await metric('crowbar_dhcp_bootenv_acks_total', 'outcome="written"')).toBe(3);
  });

  it('unknown MACs get distinct pool addresses, also across a sidecar crash; RELEASE and DECLINE', async () => {
    const macs = [1, 2, 3].map((i) => `52:54:00:d0:00:0${i}`);
    const got = new Map<string, string>();
    const clients: DhcpClientNs[] = [];
    for (const [i, mac] of macs.entries()) {
      const c = await lab.addClient(`pool${i}`, mac);
      clients.push(c);
      const env = envFile(`${await udhcpc(c, `p${i}`)}-bound.env`);
      expect(env, lab.log().slice(-3000)).toBeDefined();
      got.set(mac, env!['ip']!);
    }
    const first = new Set(got.values());
    expect(first.size).toBe(3);
    for (const a of first) expect(Number(a.split('.')[3])).toBeGreaterThanOrEqual(100);

    // Crash (SIGKILL: no clean shutdown) and start again from the journal.
    sidecar.proc.kill('SIGKILL');
    await eventually(
      'sidecar gone',
      () => sidecar.proc.exitCode !== null || sidecar.proc.signalCode !== null,
    );
    sidecar = await lab.startSidecar({
      kubeconfig: inject('kubeconfig'),
      apiServer: inject('apiServer'),
      network,
    });
    // Two new MACs get the two addresses left; a third finds the pool exhausted.
    const late: string[] = [];
    for (const i of [4, 5]) {
      const c = await lab.addClient(`pool${i}`, `52:54:00:d0:00:0${i}`);
      clients.push(c);
      const env = envFile(`${await udhcpc(c, `p${i}`)}-bound.env`);
      expect(env, lab.log().slice(-3000)).toBeDefined();
      late.push(env!['ip']!);
    }
    expect(new Set([...first, ...late]).size).toBe(5);
    const c6 = await lab.addClient('pool6', '52:54:00:d0:00:06');
    await expect(udhcpc(c6, 'p6')).rejects.toThrow();
    expect(envFile(join(lab.dir, 'udhcpc-p6-bound.env'))).toBeUndefined();
    // An old client asking for its address again (INIT-REBOOT) still has it.
    const again = envFile(
      `${await udhcpc(clients[0]!, 'p0again', ['-r', got.get(macs[0]!)!])}-bound.env`,
    );
    expect(again!['ip']).toBe(got.get(macs[0]!));

    // RELEASE frees the address for the waiting MAC.
    await udhcpcRelease(clients[1]!, 'p1release');
    const freed = got.get(macs[1]!)!;
    const env6 = envFile(`${await udhcpc(c6, 'p6b')}-bound.env`);
    expect(env6!['ip']).toBe(freed);

    // DECLINE: a squatter answers ARP for a pool address; udhcpc -a declines it.
    const squat = await lab.addClient('squat', '52:54:00:d0:00:99');
    await squat.exec('ip', ['addr', 'add', `${late[0]!}/24`, 'dev', 'eth0']);
    await udhcpcRelease(clients[3]!, 'p3release'); // late[0] is now free in the pool
    const d = await lab.addClient('decl', '52:54:00:d0:00:07');
    const before = await metric('crowbar_dhcp_outcomes_total', 'outcome="declined"');
    // The only free address is late[0]; after the DECLINE it is out of use and the pool is
    // exhausted, so the client ends without a lease.
    await expect(udhcpc(d, 'decl', ['-a', '-r', late[0]!, '-t', '3'])).rejects.toThrow();
    expect(await metric('crowbar_dhcp_outcomes_total', 'outcome="declined"')).toBe(before + 1);
    expect(envFile(join(lab.dir, 'udhcpc-decl-bound.env'))).toBeUndefined();
  });
});

describe('tftp and http boot files, fetched with curl', () => {
  const ipxeDir = '/usr/lib/ipxe';
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  it('TFTP serves the Debian iPXE first stages (tsize, blksize) and nothing else', async () => {
    for (const [file, extra] of [
      ['undionly.kpxe', []],
      ['snponly.efi', ['--tftp-blksize', '1468']],
    ] as const) {
      const out = join(lab.dir, `tftp-${file}`);
      await uc2.exec('curl', [
        '-sS',
        '-m',
        '30',
        ...extra,
        '-o',
        out,
        `tftp://${lab.serverIp}/${file}`,
      ]);
      expect(sha(readFileSync(out))).toBe(sha(readFileSync(join(ipxeDir, file))));
    }
    await expect(
      uc2.exec('curl', [
        '-sS',
        '-m',
        '10',
        '--path-as-is',
        '-o',
        '/dev/null',
        `tftp://${lab.serverIp}/../../etc/passwd`,
      ]),
    ).rejects.toThrow(/curl: \(68\)/); // CURLE_TFTP_NOTFOUND
    await expect(
      uc2.exec('curl', ['-sS', '-m', '10', '-T', '/etc/hostname', `tftp://${lab.serverIp}/x`]),
    ).rejects.toThrow();
  });

  it('HTTP serves per-node iPXE scripts, first stages and files with Range', async () => {
    const mac = '52:54:00:d0:00:aa';
    const script = await lab.curl(uc2, [`http://${lab.serverIp}:8080/ipxe/${mac}`]);
    expect(script).toMatch(/^#!ipxe/);
    expect(script).toContain(`kernel http://${lab.serverIp}:8080/files/sledgehammer/vmlinuz`);
    expect(script).toContain(`crowbar.mac=${mac}`);
    expect(script).toContain(`initrd http://${lab.serverIp}:8080/files/sledgehammer/initrd.gz`);
    const local = await lab.curl(uc2, [`http://${lab.serverIp}:8080/ipxe/${KNOWN1}`]);
    expect(local).toContain('exit');
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    writeFileSync(join(lab.fileRoot, 'blob.bin'), data);
    const part = join(lab.dir, 'part.bin');
    const code = await lab.curl(uc2, [
      '-r',
      '10-19',
      '-o',
      part,
      '-w',
      '%{http_code}',
      `http://${lab.serverIp}:8080/files/blob.bin`,
    ]);
    expect(code).toBe('206');
    expect(readFileSync(part)).toEqual(data.subarray(10, 20));
    const tail = await lab.curl(uc2, [
      '-r',
      '-5',
      '-o',
      part,
      '-w',
      '%{http_code}',
      `http://${lab.serverIp}:8080/files/blob.bin`,
    ]);
    expect(tail).toBe('206');
    expect(readFileSync(part)).toEqual(data.subarray(995));
    const bad = await lab.curl(uc2, [
      '-r',
      '5000-',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://${lab.serverIp}:8080/files/blob.bin`,
    ]);
    expect(bad).toBe('416');
    const escape = await lab.curl(uc2, [
      '--path-as-is',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://${lab.serverIp}:8080/files/../../../etc/passwd`,
    ]);
    expect(escape).toBe('404');
    const efi = join(lab.dir, 'http-snponly.efi');
    await lab.curl(uc2, ['-o', efi, `http://${lab.serverIp}:8080/boot/snponly.efi`]);
    expect(sha(readFileSync(efi))).toBe(sha(readFileSync(join(ipxeDir, 'snponly.efi'))));
  });
});

describe('hostile input to the running server', () => {
  const rss = (): number => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${sidecar.proc.pid}/status`, 'utf8'));
    return Number(m?.[1] ?? 0) * 1024;
  };
  const fuzz = join(import.meta.dirname, '..', '..', 'dhcp-sidecar', 'fuzz.ts');
  const send = async (count: number, seed: number) => {
    const { stdout } = await uc2.exec(
      process.execPath,
      [fuzz, lab.serverIp, '67', String(count), String(seed)],
      120_000,
    );
    return (JSON.parse(stdout) as { sent: number }).sent;
  };

  it('counts and drops malformed packets, keeps memory flat and still serves a client', async () => {
    await send(20_000, 1); // warm-up: JIT, pools, buffers
    const malformed0 = await metric('crowbar_dhcp_malformed_total', '');
    const rss0 = rss();
    let sent = 0;
    for (const seed of [2, 3, 4]) sent += await send(20_000, seed);
    expect(sent).toBeGreaterThan(50_000);
    await eventually(
      'malformed packets counted',
      async () => (await metric('crowbar_dhcp_malformed_total', '')) > malformed0,
    );
    expect(sidecar.proc.exitCode).toBeNull();
    expect(rss() - rss0).toBeLessThan(40 * 1024 * 1024);
    const env = envFile(`${await udhcpc(uc2, 'after-fuzz')}-bound.env`);
    expect(env!['ip']).toBe(`${lab.net}.22`);
  });
});
