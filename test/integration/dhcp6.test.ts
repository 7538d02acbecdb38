/**
 * DHCPv6 (issue 10) against the real API server and real parts, in network namespaces this file
 * creates (cbdhcp-<id>-*, removed afterwards): ISC's `dhclient -6` gets its Node's reserved IPv6
 * address (equal to the Node's ipv6 NetworkAllocation) and the boot file URL, DNS servers and
 * search list; `dhclient -6 -S` (information-only) gets the DNS servers; a client behind
 * `dhcrelay -6` in a router namespace gets its address on the network whose v6prefix holds the
 * relay's link-address; hostile DHCPv6 packets are counted and dropped and the server still
 * answers.
 *
 *   client ns ── eth0 ─┐
 *                      ├── server ns br0 (<net>.1, fd00:cb:<id>::1; sidecar)
 *   router ns wan0 ────┘   lan0 fd00:cb:<id+1>::1 ── client ns behind the relay
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { ip6ToBytes } from '../../dhcp-sidecar/codec6.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { createDhcpLab, idHextet, type DhcpClientNs, type DhcpLab } from '../harness/dhcp-lab.ts';
import { deleteNamespace, nsExec, run } from '../harness/netns.ts';
import { startProcess, type Started } from '../harness/process.ts';

const FM = 'dhcp6-test';
const u = uid();
const served = `cbdhcp6-${u}`;
const far = `cbdhcp6f-${u}`;
const domain = `v6${u}.example.com`;
let lab: DhcpLab;
let client: CrowbarClient;
let sidecar: Started;
let prefix = '';
let farPrefix = '';
let serverIp6 = '';
let c1: DhcpClientNs;
const namespaces: string[] = [];
const procs: Started[] = [];
const created: { kind: 'Node' | 'Network' | 'NetworkAllocation'; name: string }[] = [];

const MAC = '52:54:00:6c:00:01';
const FAR_MAC = '52:54:00:6c:00:02';
const UNKNOWN_MAC = '52:54:00:6c:00:09';

async function create(kind: 'Node' | 'Network' | 'NetworkAllocation', body: object) {
  const o = await client.create(kind, body as never, FM);
  created.push({ kind, name: o.metadata.name ?? '' });
}

/** The NetworkAllocation name the CRD wants for an IPv6 address: network.gggg-gggg-...-gggg. */
function allocName(network: string, address: string): string {
  const b = ip6ToBytes(address);
  if (!b) throw new Error(address);
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.toString('hex', i, i + 2));
  return `${network}.${groups.join('-')}`;
}

/** Waits until `dev` in `ns` has a link-local address that is no longer tentative (DAD done). */
async function linkLocalReady(ns: string, dev: string): Promise<void> {
  await eventually(`${ns}/${dev} link-local address ready`, async () => {
    const { stdout } = await nsExec(ns, 'ip', ['-6', 'addr', 'show', 'dev', dev]);
    return /inet6 fe80::/.test(stdout) && !/tentative/.test(stdout);
  });
}

function envFile(path: string): Record<string, string> | undefined {
  if (!existsSync(path)) return undefined;
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/**
 * Runs `dhclient -6` (stateful, or `-S` information-only) in `ns` until its hook has recorded a
 * lease (BOUND6) or the information (INFORM6-like reasons carry no address), then stops it. The
 * hook writes each reason's environment and configures the address on eth0.
 */
async function dhclient6(ns: string, name: string, infoOnly: boolean) {
  const base = join(lab.dir, `dhclient6-${name}`);
  const conf = `${base}.conf`;
  writeFileSync(
    conf,
    [
      'option dhcp6.bootfile-url code 59 = string;',
      'also request dhcp6.bootfile-url;',
      'timeout 30;',
      '',
    ].join('\n'),
  );
  const script = `${base}.sh`;
  writeFileSync(
    script,
    [
      '#!/bin/sh',
      `env > "${base}-$reason.env"`,
      'case "$reason" in',
      '  BOUND6|RENEW6|REBIND6) ip -6 addr add "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad ;;',
      'esac',
      'exit 0',
      '',
    ].join('\n'),
  );
  chmodSync(script, 0o755);
  const p = startProcess(
    'ip',
    [
      'netns',
      'exec',
      ns,
      'dhclient',
      '-6',
      ...(infoOnly ? ['-S'] : []),
      '-d',
      '-v',
      '-1',
      '-cf',
      conf,
      '-lf',
      `${base}.leases`,
      '-pf',
      `${base}.pid`,
      '-sf',
      script,
      'eth0',
    ],
    `${base}.log`,
  );
  procs.push(p);
  try {
    const env = await eventually(
      `dhclient -6 ${infoOnly ? '-S ' : ''}in ${ns} configured`,
      () => {
        for (const r of ['BOUND6', 'RENEW6', 'REBIND6', 'INFORM6']) {
          const e = envFile(`${base}-${r}.env`);
          if (e && (infoOnly || e['new_ip6_address'])) return e;
        }
        return undefined;
      },
      45_000,
    );
    return { env, log: () => readFileSync(`${base}.log`, 'utf8') };
  } finally {
    await p.stop(5000);
  }
}

/** A counter from the sidecar's /metrics, read inside its own namespace. */
async function metric(name: string, labels = ''): Promise<number> {
  const { stdout: text } = await nsExec(lab.serverNs, 'curl', [
    '-sS',
    '-m',
    '10',
    `http://${lab.serverIp}:8080/metrics`,
  ]);
  let sum = 0;
  for (const l of text.split('\n'))
    if ((l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels))
      sum += Number(l.split(' ').pop());
  return sum;
}

beforeAll(async () => {
  client = testClient();
  lab = await createDhcpLab();
  // Per-run prefixes from the lab's random id: runs never collide.
  prefix = `fd00:cb:${idHextet(lab.id)}::`;
  farPrefix = `fd00:cc:${idHextet(lab.id)}::`;
  serverIp6 = `${prefix}1`;
  await run('ip', ['-n', lab.serverNs, 'addr', 'add', `${serverIp6}/64`, 'dev', 'br0', 'nodad']);
  await create('Network', {
    metadata: { name: served },
    spec: {
      category: 'admin',
      subnet: `${lab.net}.0/24`,
      v6prefix: `${prefix}/64`,
      ranges: [{ name: 'host-v6', first: `${prefix}10`, last: `${prefix}ff` }],
    },
  });
  await create('Network', {
    metadata: { name: far },
    spec: {
      category: 'general',
      group: far,
      subnet: `10.247.${lab.net.split('.')[2] ?? '1'}.0/24`,
      v6prefix: `${farPrefix}/64`,
      ranges: [{ name: 'host-v6', first: `${farPrefix}10`, last: `${farPrefix}ff` }],
    },
  });
  for (const [node, mac, network, address, bootEnv] of [
    [`n1.${domain}`, MAC, served, `${prefix}21`, 'sledgehammer'],
    [`n2.${domain}`, FAR_MAC, far, `${farPrefix}22`, 'sledgehammer'],
  ] as const) {
    await create('Node', { metadata: { name: node }, spec: { macs: [mac], bootEnv } });
    await create('NetworkAllocation', {
      metadata: { name: allocName(network, address) },
      spec: { network, node, address: `${address}/64`, family: 'ipv6', range: 'host-v6' },
    });
  }
  sidecar = await lab.startSidecar({
    kubeconfig: inject('kubeconfig'),
    apiServer: inject('apiServer'),
    network: served,
    extraArgs: [
      '--server-ip6',
      serverIp6,
      '--dhcp6-interfaces',
      'br0',
      '--dns6',
      serverIp6,
      '--search',
      domain,
      '--ra-interface',
      'br0',
    ],
  });
}, 120_000);

afterAll(async () => {
  for (const p of procs) await p.stop(5000);
  for (const ns of namespaces.reverse()) await deleteNamespace(ns);
  await lab.destroy();
  for (const o of created.reverse()) await client.delete(o.kind, o.name).catch(() => undefined);
});

describe('on the link', () => {
  it('radvd, run by the sidecar from the Network, advertises M and O flags and the prefix on-link', async () => {
    c1 = await lab.addClient('c1', MAC);
    await linkLocalReady(c1.ns, 'eth0');
    // rdisc6 (ndisc6) solicits a router advertisement and prints it.
    const { stdout } = await eventually('a router advertisement', async () => {
      const r = await c1.exec('rdisc6', ['-1', '-w', '1000', '-r', '3', 'eth0'], 20_000);
      return /Prefix/.test(r.stdout) ? r : undefined;
    });
    expect(stdout).toMatch(/Stateful address conf\.\s*:\s*Yes/);
    expect(stdout).toMatch(/Stateful other conf\.\s*:\s*Yes/);
    expect(stdout).toContain(`Prefix                   : ${prefix}/64`);
    expect(stdout).toMatch(/On-link\s*:\s*Yes/);
    expect(stdout).toMatch(/Autonomous address conf\.\s*:\s*No/);
    expect(stdout).toMatch(/Router lifetime\s*:\s*0 /);
  });

  it('dhclient -6 gets the Node’s reserved address (its NetworkAllocation) and the boot options', async () => {
    const c = c1;
    const { env, log } = await dhclient6(c.ns, 'c1', false);
    const alloc = await client.get('NetworkAllocation', allocName(served, `${prefix}21`));
    const allocated = alloc?.spec.address.split('/')[0];
    expect(env['new_ip6_address'], log() + lab.log().slice(-3000)).toBe(allocated);
    expect(env['new_dhcp6_bootfile_url']).toBe(`tftp://[${serverIp6}]/snponly.efi`);
    expect(env['new_dhcp6_name_servers']).toBe(serverIp6);
    expect(env['new_dhcp6_domain_search']).toBe(`${domain}.`);
    // The hook configured it: the address is on the client's interface and, with the on-link
    // prefix from the router advertisement, reaches the server.
    const { stdout } = await c.exec('ip', ['-6', 'addr', 'show', 'dev', 'eth0']);
    expect(stdout).toContain(`${allocated ?? '?'}/`);
    await c.exec('ping', ['-6', '-c', '1', '-W', '5', serverIp6]);
    expect(await metric('crowbar_dhcp6_outcomes_total', 'outcome="replied"')).toBeGreaterThan(0);
  });

  it('dhclient -6 -S (information-only) gets the DNS servers and search list, no address', async () => {
    const c = await lab.addClient('c2', UNKNOWN_MAC);
    await linkLocalReady(c.ns, 'eth0');
    const { env } = await dhclient6(c.ns, 'c2', true);
    expect(env['new_dhcp6_name_servers']).toBe(serverIp6);
    expect(env['new_dhcp6_domain_search']).toBe(`${domain}.`);
    expect(env['new_ip6_address']).toBeUndefined();
    expect(
      await metric('crowbar_dhcp6_outcomes_total', 'type="INFORMATION_REQUEST",outcome="informed"'),
    ).toBeGreaterThan(0);
  });
});

describe('through dhcrelay -6', () => {
  it('a client behind the relay gets its address on the network of the relay’s link-address', async () => {
    const r = `cbdhcp-${lab.id}-r6`;
    const c = `cbdhcp-${lab.id}-c6`;
    namespaces.push(r, c);
    for (const ns of [r, c]) {
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    const wan = `${prefix}253`;
    await run('ip', [
      '-n',
      lab.serverNs,
      'link',
      'add',
      'rl6',
      'type',
      'veth',
      'peer',
      'name',
      'wan0',
      'netns',
      r,
    ]);
    await run('ip', ['-n', lab.serverNs, 'link', 'set', 'rl6', 'master', 'br0', 'up']);
    await run('ip', ['-n', r, 'addr', 'add', `${wan}/64`, 'dev', 'wan0', 'nodad']);
    await run('ip', ['-n', r, 'link', 'set', 'wan0', 'up']);
    await run('ip', [
      '-n',
      r,
      'link',
      'add',
      'lan0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      c,
    ]);
    await run('ip', ['-n', r, 'addr', 'add', `${farPrefix}1/64`, 'dev', 'lan0', 'nodad']);
    await run('ip', ['-n', r, 'link', 'set', 'lan0', 'up']);
    await run('ip', ['-n', c, 'link', 'set', 'eth0', 'address', FAR_MAC, 'up']);
    await nsExec(r, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
    await run('ip', ['-n', lab.serverNs, '-6', 'route', 'add', `${farPrefix}/64`, 'via', wan]);
    await linkLocalReady(r, 'lan0');
    await linkLocalReady(r, 'wan0');
    await linkLocalReady(c, 'eth0');
    const rlog = join(lab.dir, 'dhcrelay6.log');
    procs.push(
      startProcess(
        'ip',
        [
          'netns',
          'exec',
          r,
          'dhcrelay',
          '-6',
          '-d',
          '-I', // RFC 8415 §21.18: send the interface-id option (the server must echo it)
          '-pf',
          join(lab.dir, 'dhcrelay6.pid'),
          '-l',
          'lan0',
          '-u',
          `${serverIp6}%wan0`,
        ],
        rlog,
      ),
    );
    await eventually(
      'dhcrelay -6 listening',
      () => existsSync(rlog) && /Listening on Socket\/lan0/.test(readFileSync(rlog, 'utf8')),
      15_000,
    );
    const { env, log } = await dhclient6(c, 'c6', false);
    expect(env['new_ip6_address'], log() + readFileSync(rlog, 'utf8')).toBe(`${farPrefix}22`);
    expect(env['new_dhcp6_bootfile_url']).toBe(`tftp://[${serverIp6}]/snponly.efi`);
    // The relay took our Relay-Reply (interface-id echoed) and handed the reply down.
    expect(readFileSync(rlog, 'utf8')).toMatch(/Relaying Reply to fe80::[0-9a-f:]+ port 546 down/);
    expect(await metric('crowbar_dhcp6_received_total', 'relayed="yes"')).toBeGreaterThan(0);
  });
});

describe('hostile input', () => {
  it('counts and drops malformed DHCPv6 packets and still serves a client', async () => {
    const c = c1;
    const fuzz = join(import.meta.dirname, '..', '..', 'dhcp-sidecar', 'fuzz6.ts');
    const before = await metric('crowbar_dhcp6_malformed_total');
    const { stdout } = await c.exec(
      process.execPath,
      [fuzz, serverIp6, '547', '20000', '7'],
      120_000,
    );
    expect((JSON.parse(stdout) as { sent: number }).sent).toBeGreaterThan(15_000);
    await eventually(
      'malformed DHCPv6 packets counted',
      async () => (await metric('crowbar_dhcp6_malformed_total')) > before,
    );
    expect(sidecar.proc.exitCode).toBeNull();
    const { env } = await dhclient6(c.ns, 'c3', false);
    expect(env['new_ip6_address']).toBe(`${prefix}21`);
  });
});
