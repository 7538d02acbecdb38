/**
 * An IPv6-only network boot (issue 10), end to end, in a network namespace this file creates: an
 * OVMF VM (qemu TCG) with IPv4 PXE switched off and no IPv4 address from anyone (its Node has
 * only an ipv6 NetworkAllocation and the Network no IPv4 pool) boots from the sidecar over IPv6:
 * OVMF's PXEv6 gets its Node's address and a tftp://[...] boot file URL by DHCPv6 and loads
 * iPXE (snponly.efi) over TFTP on IPv6; iPXE asks DHCPv6 again (user class iPXE), gets its
 * per-node script URL http://[...]:8080/ipxe/<mac> and fetches the script, kernel and initrd over
 * HTTP on IPv6; the test initramfs puts the address the script gave it ({{address}} rendered
 * over IPv6) on its interface and calls back over IPv6. radvd (run by the sidecar) announces
 * the prefix on-link with the M and O flags.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { ip6ToBytes } from '../../dhcp-sidecar/codec6.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { createDhcpLab, idHextet, type DhcpLab } from '../harness/dhcp-lab.ts';
import { nsExec, run } from '../harness/netns.ts';

const u = uid();
const network = `cbdhcp6b-${u}`;
const domain = `boot6${u}.example.com`;
const FM = 'dhcp6-boot-test';
const BOOTENV = `pxetest6${u}-install`;
/** Its own cache, keyed by the image's /init (which must know pxetest.ip6; older ones do not). */
const IMAGE = join(
  homedir(),
  '.cache',
  'crowbar',
  `pxe-test-${createHash('sha256')
    .update(readFileSync(join(import.meta.dirname, '..', 'harness', 'pxe-image', 'init')))
    .digest('hex')
    .slice(0, 12)}`,
);
const MAC = '52:54:00:6b:00:01';
const NODE = `vm6.${domain}`;
let lab: DhcpLab;
let client: CrowbarClient;
let callbacks = '';
let serverIp6 = '';
let address6 = '';

function allocName(address: string): string {
  const b = ip6ToBytes(address);
  if (!b) throw new Error(address);
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.toString('hex', i, i + 2));
  return `${network}.${g.join('-')}`;
}

async function metric(name: string, labels = ''): Promise<number> {
  const { stdout } = await nsExec(lab.serverNs, 'curl', [
    '-sS',
    '-m',
    '10',
    `http://${lab.serverIp}:8080/metrics`,
  ]);
  let sum = 0;
  for (const l of stdout.split('\n'))
    if ((l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels))
      sum += Number(l.split(' ').pop());
  return sum;
}

beforeAll(async () => {
  execFileSync(join(import.meta.dirname, '..', 'harness', 'build-pxe-image.sh'), [IMAGE], {
    stdio: 'ignore',
    timeout: 300_000,
  });
  client = testClient();
  lab = await createDhcpLab();
  const prefix = `fd00:cd:${idHextet(lab.id)}::`;
  serverIp6 = `${prefix}1`;
  address6 = `${prefix}61`;
  await run('ip', ['-n', lab.serverNs, 'addr', 'add', `${serverIp6}/64`, 'dev', 'br0', 'nodad']);
  mkdirSync(join(lab.fileRoot, 'pxetest'));
  for (const f of ['vmlinuz', 'initrd.gz'])
    copyFileSync(join(IMAGE, f), join(lab.fileRoot, 'pxetest', f));
  callbacks = join(lab.dir, 'callbacks.jsonl');
  lab.startInServerNs(
    process.execPath,
    [join(import.meta.dirname, '..', 'harness', 'pxe-callback.ts'), serverIp6, '8081', callbacks],
    join(lab.dir, 'callback.log'),
  );
  await client.create(
    'BootEnv',
    {
      metadata: { name: BOOTENV },
      spec: {
        kernel: 'pxetest/vmlinuz',
        initrds: ['pxetest/initrd.gz'],
        kernelArgs:
          'initrd={{initrd}} console=ttyS0,115200 pxetest.callback=http://[{{server}}]:8081/callback pxetest.id={{name}} pxetest.ip6={{address}}',
      },
    },
    FM,
  );
  await client.create(
    'Network',
    {
      metadata: { name: network },
      spec: {
        category: 'admin',
        subnet: `${lab.net}.0/24`,
        v6prefix: `${prefix}/64`,
        ranges: [{ name: 'host-v6', first: `${prefix}10`, last: `${prefix}ff` }],
      },
    },
    FM,
  );
  await client.create(
    'Node',
    { metadata: { name: NODE }, spec: { macs: [MAC], bootEnv: BOOTENV } },
    FM,
  );
  await client.create(
    'NetworkAllocation',
    {
      metadata: { name: allocName(address6) },
      spec: { network, node: NODE, address: `${address6}/64`, family: 'ipv6', range: 'host-v6' },
    },
    FM,
  );
  await lab.startSidecar({
    kubeconfig: inject('kubeconfig'),
    apiServer: inject('apiServer'),
    network,
    extraArgs: ['--server-ip6', serverIp6, '--dhcp6-interfaces', 'br0', '--ra-interface', 'br0'],
  });
}, 400_000);

afterAll(async () => {
  await lab.destroy();
  await client.delete('NetworkAllocation', allocName(address6)).catch(() => undefined);
  await client.delete('Node', NODE).catch(() => undefined);
  await client.delete('Network', network).catch(() => undefined);
  await client.delete('BootEnv', BOOTENV).catch(() => undefined);
});

function callback(): Record<string, string> | undefined {
  if (!existsSync(callbacks)) return undefined;
  for (const line of readFileSync(callbacks, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const body = JSON.parse(line) as Record<string, string>;
      if (body['mac'] === MAC) return body;
    } catch {
      // a partial line
    }
  }
  return undefined;
}

it('an IPv6-only OVMF VM boots over DHCPv6, TFTP and HTTP on IPv6 and calls back over IPv6', async () => {
  await eventually('boot environment acknowledged', async () => {
    const n = await client.get('Node', NODE);
    return n?.status?.bootEnv?.applied === BOOTENV;
  });
  await lab.addTap('tap6');
  const vars = join(lab.dir, 'vm6-vars.fd');
  copyFileSync('/usr/share/OVMF/OVMF_VARS_4M.fd', vars);
  const serial = join(lab.dir, 'vm6.serial');
  // prettier-ignore
  const qemu = lab.startInServerNs('qemu-system-x86_64', [
    '-name', 'vm6', '-machine', 'q35,accel=tcg', '-cpu', 'max', '-smp', '1', '-m', '512',
    '-nographic', '-nodefaults', '-serial', 'stdio', '-monitor', 'none', '-no-reboot',
    '-netdev', 'tap,id=n0,ifname=tap6,script=no,downscript=no',
    '-drive', 'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd',
    '-drive', `if=pflash,format=raw,unit=1,file=${vars}`,
    '-device', `virtio-net-pci,netdev=n0,mac=${MAC},bootindex=1,romfile=`,
    // IPv6 only: OVMF's IPv4 PXE and HTTP boot off, its IPv6 PXE on.
    '-fw_cfg', 'name=opt/org.tianocore/IPv4PXESupport,string=n',
    '-fw_cfg', 'name=opt/org.tianocore/IPv6PXESupport,string=y',
  ], serial);
  try {
    const got = await eventually(
      'callback from the IPv6-only VM',
      () => callback() ?? (qemu.proc.exitCode !== null ? 'exited' : undefined),
      240_000,
      250,
    );
    const log = readFileSync(serial, 'utf8').replaceAll(String.fromCharCode(27), '');
    const steps = log
      .split('\n')
      .filter((l) => /PXE|IPv6|NBP|iPXE|http|tftp|Station|PXETEST|Linux version/i.test(l))
      .slice(-40)
      .join('\n');
    const body = got === 'exited' ? callback() : got;
    // Each step, in order, as the serial console and the sidecar saw it.
    expect(log, steps).toContain('Start PXE over IPv6');
    // OVMF prints the address uncompressed, e.g. FD00:CD:1A2B:0:0:0:0:61.
    const b = ip6ToBytes(address6) ?? Buffer.alloc(16);
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16).toUpperCase());
    expect(log, steps).toContain(`Station IP address is ${groups.join(':')}`);
    expect(log, steps).toContain('NBP file downloaded successfully');
    expect(log, steps).toContain(`http://[${serverIp6}]:8080/ipxe/`);
    expect(log, steps).toMatch(/PXETEST: init started/);
    expect(body, steps).toBeDefined();
    if (!body) return;
    expect(body['ip'], steps).toBe(`${address6}/64`);
    expect(body['id']).toBe(NODE);
    expect(body['cmdline']).toContain(`pxetest.callback=http://[${serverIp6}]:8081/callback`);
    // Never an IPv4 address: the sidecar offered none (no v4 allocation, no pool).
    expect(await metric('crowbar_dhcp_outcomes_total', 'outcome="offered"')).toBe(0);
    expect(await metric('crowbar_dhcp6_outcomes_total', 'outcome="replied"')).toBeGreaterThan(1);
  } finally {
    await qemu.stop(5000);
  }
}, 400_000);
