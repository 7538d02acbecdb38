/**
 * Secondaries (issue 11): a real BIND9 `named` is a secondary of the sidecar's zones. The sidecar,
 * fed by the real API server, NOTIFYs it on every serial change; BIND then transfers the zone
 * (its IXFR request answered with a full transfer in AXFR form) and serves the new records, which
 * `dig` checks against BIND itself. SOA refresh is a day, so only NOTIFY can explain a transfer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePortOn, startDnsSidecar, type DnsSidecarProc } from '../../dns-sidecar/lab.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { dig, loopback, soaSerial } from '../harness/dns.ts';
import { startNamed, type RunningServer } from '../harness/dns-servers.ts';

const kubeconfig = inject('kubeconfig');
const logDir = inject('cpDir');
const client = testClient();
const FM = 'crowbar-dns-test';

const id = uid();
const domain = `s${id}.crowbar.test`;
const net = `dnss-${id}`;
const o2 = randomInt(1, 255);
const o3 = randomInt(1, 255);
const v4 = (last: number) => `10.${o2}.${o3}.${last}`;
const revZone = `${o3}.${o2}.10.in-addr.arpa`;
const ours = loopback();
// named listens only on addresses configured on an interface, so it takes 127.0.0.1 and a free
// port rather than an address of its own in 127.53/16.
const bindHost = '127.0.0.1';
let bindPort = 0;
const PORT = 5353;
const tmp = mkdtempSync(join(tmpdir(), 'cbdns-sec-'));
let sidecar: DnsSidecarProc | undefined;
let named: RunningServer | undefined;
const allocations: string[] = [];

const portOf = (host: string) => (host === bindHost ? bindPort : PORT);
const serialAt = async (host: string, zone: string) =>
  soaSerial(await dig(host, portOf(host), [zone, 'SOA', '+norec']));
const askBind = (args: string[]) => dig(bindHost, bindPort, [...args, '+norec']);

beforeAll(async () => {
  await client.create(
    'Network',
    { metadata: { name: net }, spec: { category: 'admin', subnet: `10.${o2}.${o3}.0/24` } },
    FM,
  );
  bindPort = await freePortOn(bindHost);
  sidecar = await startDnsSidecar({
    kubeconfig,
    domains: [domain],
    host: ours,
    port: PORT,
    notify: [`${bindHost}:${bindPort}`],
    allowTransfer: ['127.0.0.0/8'],
    logFile: join(logDir, `dns-secondary-sidecar-${id}.log`),
  });
  named = startNamed(join(tmp, 'named'), bindHost, bindPort, [
    { origin: domain, primary: { host: ours, port: PORT }, file: 'fwd.db' },
    { origin: revZone, primary: { host: ours, port: PORT }, file: 'rev.db' },
  ]);
  await eventually(
    'BIND loaded both zones from the sidecar',
    async () =>
      (await serialAt(bindHost, domain)) === (await serialAt(ours, domain)) &&
      (await serialAt(bindHost, revZone)) === (await serialAt(ours, revZone)),
    60_000,
    200,
  );
});

afterAll(async () => {
  await sidecar?.stop();
  await named?.stop();
  for (const a of allocations) await client.delete('NetworkAllocation', a).catch(() => undefined);
  await client.delete('Network', net).catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
});

describe('a BIND9 secondary of the sidecar', () => {
  it('receives NOTIFY on a change and transfers the new zones', async () => {
    const before = await serialAt(bindHost, domain);
    const node = `n1.${domain}`;
    const name = `${net}.${v4(81).replaceAll('.', '-')}`;
    await client.create(
      'NetworkAllocation',
      {
        metadata: { name },
        spec: { network: net, node, address: `${v4(81)}/24`, family: 'ipv4', range: 'host' },
      },
      FM,
    );
    allocations.push(name);
    await eventually(
      'BIND answers the new A record',
      async () => (await askBind([node, 'A'])).data.includes(v4(81)),
      30_000,
      100,
    );
    await eventually(
      'BIND answers the new PTR record',
      async () => (await askBind(['-x', v4(81)])).data.includes(`${node}.`),
      30_000,
      100,
    );
    const after = await serialAt(bindHost, domain);
    expect(after).not.toBe(before);
    expect(after).toBe(await serialAt(ours, domain));
    const bindAnswer = await askBind([node, 'A']);
    expect(bindAnswer.flags).toContain('aa');

    // Deleting the allocation reaches the secondary the same way.
    await client.delete('NetworkAllocation', name);
    await eventually(
      'BIND no longer has the A record',
      async () => (await askBind([node, 'A'])).status === 'NXDOMAIN',
      30_000,
      100,
    );
    const metrics = (await sidecar!.http('/metrics')).body;
    expect(metrics).toMatch(
      new RegExp(
        `crowbar_dns_notify_total\\{target="${bindHost}:${bindPort}",result="ok"\\} [1-9]`,
      ),
    );
    expect(metrics).toMatch(/crowbar_dns_transfers_total\{zone="[^"]+",result="ok"\} [1-9]/);
  });
});
