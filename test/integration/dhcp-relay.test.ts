/**
 * DHCP through relays (issue 10): two client networks, each behind its own router namespace
 * running ISC's `dhcrelay` (isc-dhcp-relay, with option 82), relay to the sidecar on the server
 * network. Each client (busybox udhcpc) gets its node's address on the network that matches its
 * relay's giaddr; `tcpdump` on a router's upstream link (wan0) sees the sidecar's replies carry the
 * relay's option 82 back. All namespaces are this file's (cbdhcp-<id>-*), removed afterwards.
 *
 *   client A ns ── r1 (lan0 10.249.N.1 | wan0 <net>.253) ──┐
 *                                                         ├── server ns br0 <net>.1 (sidecar)
 *   client B ns ── r2 (lan0 10.248.N.1 | wan0 <net>.252) ──┘
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { createDhcpLab, type DhcpLab } from '../harness/dhcp-lab.ts';
import { deleteNamespace, nsExec, run } from '../harness/netns.ts';
import { startProcess, type Started } from '../harness/process.ts';

const FM = 'dhcp-relay-test';
const u = uid();
const served = `cbdhcp-srv-${u}`;
const domain = `relay${u}.example.com`;
let lab: DhcpLab;
let client: CrowbarClient;
const namespaces: string[] = [];
const procs: Started[] = [];
const created: { kind: 'Node' | 'Network' | 'NetworkAllocation'; name: string }[] = [];

interface Side {
  /** Network name in the API. */
  network: string;
  /** e.g. 10.249.7 */
  net: string;
  router: string;
  client: string;
  mac: string;
  node: string;
  address: string;
}
let sides: Side[] = [];

async function create(kind: 'Node' | 'Network' | 'NetworkAllocation', body: object) {
  const o = await client.create(kind, body as never, FM);
  created.push({ kind, name: o.metadata.name ?? '' });
}

/** A router namespace between the server's bridge and one client namespace, running dhcrelay. */
async function addRelayedNetwork(i: number, upAddress: string, s: Side): Promise<void> {
  const r = `cbdhcp-${lab.id}-r${String(i)}`;
  const c = `cbdhcp-${lab.id}-c${String(i)}`;
  s.router = r;
  s.client = c;
  namespaces.push(r, c);
  for (const ns of [r, c]) {
    await run('ip', ['netns', 'add', ns]);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  const port = `rl${String(i)}`;
  await run('ip', [
    '-n',
    lab.serverNs,
    'link',
    'add',
    port,
    'type',
    'veth',
    'peer',
    'name',
    'wan0',
    'netns',
    r,
  ]);
  await run('ip', ['-n', lab.serverNs, 'link', 'set', port, 'master', 'br0', 'up']);
  await run('ip', ['-n', r, 'addr', 'add', `${upAddress}/24`, 'dev', 'wan0']);
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
  await run('ip', ['-n', r, 'addr', 'add', `${s.net}.1/24`, 'dev', 'lan0']);
  await run('ip', ['-n', r, 'link', 'set', 'lan0', 'up']);
  await run('ip', ['-n', c, 'link', 'set', 'eth0', 'address', s.mac, 'up']);
  await nsExec(r, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  // The server reaches the client network (giaddr) through its router.
  await run('ip', ['-n', lab.serverNs, 'route', 'add', `${s.net}.0/24`, 'via', upAddress]);
  const log = join(lab.dir, `dhcrelay-${String(i)}.log`);
  const p = startProcess(
    'ip',
    [
      'netns',
      'exec',
      r,
      'dhcrelay',
      '-4',
      '-d',
      '-a', // RFC 3046: add option 82 (circuit id = the downstream interface)
      '-pf',
      join(lab.dir, `dhcrelay-${String(i)}.pid`),
      '-iu',
      'wan0',
      '-id',
      'lan0',
      lab.serverIp,
    ],
    log,
  );
  procs.push(p);
  await eventually(
    `dhcrelay in ${r} listening`,
    () => existsSync(log) && /Listening on (LPF|Socket)\/lan0/.test(readFileSync(log, 'utf8')),
    15_000,
  );
}

function script(): string {
  const path = join(lab.dir, 'udhcpc.sh');
  writeFileSync(
    path,
    ['#!/bin/sh', 'case "$1" in', '  bound) env > "$OUT" ;;', 'esac', 'exit 0', ''].join('\n'),
  );
  chmodSync(path, 0o755);
  return path;
}

function envOf(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

beforeAll(async () => {
  client = testClient();
  lab = await createDhcpLab();
  const octet = lab.net.split('.')[2] ?? '1';
  sides = [
    { network: `cbdhcp-ra-${u}`, net: `10.249.${octet}` },
    { network: `cbdhcp-rb-${u}`, net: `10.248.${octet}` },
  ].map((s, i) => ({
    ...s,
    mac: `52:54:00:e${String(i)}:00:0${String(i + 1)}`,
    router: '',
    client: '',
    node: `n${String(i + 1)}.${domain}`,
    address: `${s.net}.${String(21 + i)}`,
  }));
  await create('Network', {
    metadata: { name: served },
    spec: { category: 'admin', subnet: `${lab.net}.0/24` },
  });
  for (const s of sides) {
    await create('Network', {
      metadata: { name: s.network },
      spec: {
        category: 'general',
        group: s.network,
        subnet: `${s.net}.0/24`,
        router: { address: `${s.net}.1` },
        ranges: [{ name: 'host', first: `${s.net}.10`, last: `${s.net}.99` }],
      },
    });
    await create('Node', { metadata: { name: s.node }, spec: { macs: [s.mac], bootEnv: 'local' } });
    await create('NetworkAllocation', {
      metadata: { name: `${s.network}.${s.address.replace(/\./g, '-')}` },
      spec: {
        network: s.network,
        node: s.node,
        address: `${s.address}/24`,
        family: 'ipv4',
        range: 'host',
      },
    });
  }
  await lab.startSidecar({
    kubeconfig: inject('kubeconfig'),
    apiServer: inject('apiServer'),
    network: served,
    extraArgs: ['--dns', lab.serverIp],
  });
  const [a, b] = sides;
  if (!a || !b) throw new Error('two sides');
  await addRelayedNetwork(1, `${lab.net}.253`, a);
  await addRelayedNetwork(2, `${lab.net}.252`, b);
});

afterAll(async () => {
  for (const p of procs) await p.stop(5000);
  for (const ns of namespaces.reverse()) await deleteNamespace(ns);
  await lab.destroy();
  for (const o of created.reverse()) await client.delete(o.kind, o.name).catch(() => undefined);
});

it('a client behind each relay gets its node’s address on the giaddr’s network, option 82 echoed', async () => {
  const [a] = sides;
  if (!a) throw new Error('no side');
  // An independent witness of the echo: tcpdump on r1's upstream link, decoding option 82.
  const capture = join(lab.dir, 'r1-up.tcpdump');
  const dump = startProcess(
    'ip',
    ['netns', 'exec', a.router, 'tcpdump', '-l', '-n', '-vv', '-i', 'wan0', 'udp', 'port', '67'],
    capture,
  );
  procs.push(dump);
  await eventually(
    'tcpdump listening',
    () => existsSync(capture) && /listening on wan0/.test(readFileSync(capture, 'utf8')),
    15_000,
  );
  for (const s of sides) {
    const out = join(lab.dir, `lease-${s.client}`);
    await nsExec(
      s.client,
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
        script(),
      ],
      30_000,
    );
    const env = envOf(out);
    expect(env['ip'], lab.log().slice(-3000)).toBe(s.address);
    expect(env['router']).toBe(`${s.net}.1`);
    expect(env['mask']).toBe('24');
    expect(env['serverid']).toBe(lab.serverIp);
    expect(env['hostname']).toBe(s.node.split('.')[0]);
  }
  // Both replies to r1 (OFFER and ACK) came from the sidecar to the giaddr with the relay's
  // option 82 (circuit id "lan0") in them.
  const replies = await eventually('two replies to r1 captured', () => {
    const text = readFileSync(capture, 'utf8');
    const blocks = text.split(/\n(?=\d\d:\d\d:\d\d)/).filter((b) => /Reply/.test(b));
    return blocks.length >= 2 ? blocks : undefined;
  });
  for (const b of replies) {
    expect(b).toContain(`${lab.serverIp}.67 > ${a.net}.1.67`);
    expect(b).toMatch(/Agent-Information[^]*Circuit-ID[^]*lan0/);
  }
  await dump.stop();
});
