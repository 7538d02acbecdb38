/**
 * The DHCP/TFTP/HTTP boot sidecar's entry point: `node dhcp-sidecar/main.ts --server-ip A
 * --network admin` (flags or environment). It serves one provisioning interface; see the README
 * for why and what a site with several provisioning networks does.
 */
import { hostname } from 'node:os';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { StaticBackend, type Backend, type NetworkConfig, type StaticData } from './backend.ts';
import type { ServerConfig } from './handler.ts';
import { BootHttpServer } from './http.ts';
import { KubeBackend } from './kube-backend.ts';
import { makeMetrics, rootLogger } from './metrics.ts';
import { Pool } from './pool.ts';
import { tcpToUnix } from './relay.ts';
import { DhcpServer } from './server.ts';
import { TftpServer } from './tftp.ts';

const env = process.env;
const list = (s: string | undefined): string[] =>
  (s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');

const { values: f } = parseArgs({
  options: {
    kubeconfig: { type: 'string', default: env['KUBECONFIG'] ?? '' },
    network: { type: 'string', default: env['CROWBAR_DHCP_NETWORK'] ?? 'admin' },
    'server-ip': { type: 'string', default: env['CROWBAR_DHCP_SERVER_IP'] ?? '' },
    'dhcp-port': { type: 'string', default: env['CROWBAR_DHCP_PORT'] ?? '67' },
    'tftp-port': { type: 'string', default: env['CROWBAR_TFTP_PORT'] ?? '69' },
    'http-port': { type: 'string', default: env['CROWBAR_BOOT_HTTP_PORT'] ?? '8080' },
    'http-host': { type: 'string', default: env['CROWBAR_BOOT_HTTP_HOST'] ?? '0.0.0.0' },
    'boot-root': { type: 'string', default: env['CROWBAR_BOOT_ROOT'] ?? '/usr/lib/ipxe' },
    'file-root': { type: 'string', default: env['CROWBAR_FILE_ROOT'] ?? '/var/lib/crowbar/files' },
    'state-dir': {
      type: 'string',
      default: env['CROWBAR_DHCP_STATE_DIR'] ?? '/var/lib/crowbar/dhcp',
    },
    dns: { type: 'string', default: env['CROWBAR_DHCP_DNS'] ?? '' },
    ntp: { type: 'string', default: env['CROWBAR_DHCP_NTP'] ?? '' },
    domain: { type: 'string', default: env['CROWBAR_DHCP_DOMAIN'] ?? '' },
    search: { type: 'string', default: env['CROWBAR_DHCP_SEARCH'] ?? '' },
    'lease-seconds': { type: 'string', default: env['CROWBAR_DHCP_LEASE_SECONDS'] ?? '3600' },
    'pool-lease-seconds': { type: 'string', default: '600' },
    'pxe-lease-seconds': { type: 'string', default: '60' },
    'pxe-port': { type: 'string', default: env['CROWBAR_DHCP_PXE_PORT'] ?? '4011' },
    'recv-buffer-bytes': {
      type: 'string',
      default: env['CROWBAR_DHCP_RECV_BUFFER_BYTES'] ?? String(256 * 1024),
    },
    'discovery-bootenv': { type: 'string', default: 'sledgehammer' },
    id: { type: 'string', default: env['POD_NAME'] ?? hostname() },
    static: { type: 'string', default: env['CROWBAR_DHCP_STATIC'] ?? '' },
    'api-via-unix': { type: 'string', default: '' },
    'no-ack': { type: 'boolean', default: false },
    'no-default-bootenvs': { type: 'boolean', default: false },
  },
});

function num(name: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got ${v}`);
  return n;
}

async function main(): Promise<void> {
  const log = rootLogger('crowbar-dhcp');
  const metrics = makeMetrics();
  const serverIp = f['server-ip'];
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(serverIp))
    throw new Error(
      '--server-ip (CROWBAR_DHCP_SERVER_IP) must be this sidecar’s IPv4 address on the provisioning interface',
    );
  const httpPort = num('http-port', f['http-port']);
  const httpBase = `http://${serverIp}:${httpPort}`;
  const config: ServerConfig = {
    serverIp,
    httpBase,
    discoveryBootEnv: f['discovery-bootenv'],
    leaseSeconds: num('lease-seconds', f['lease-seconds']),
    poolLeaseSeconds: num('pool-lease-seconds', f['pool-lease-seconds']),
    pxeLeaseSeconds: num('pxe-lease-seconds', f['pxe-lease-seconds']),
  };
  const network = f.network;
  let backend: Backend;
  let kube: KubeBackend | undefined;
  if (f.static) {
    backend = new StaticBackend(JSON.parse(readFileSync(f.static, 'utf8')) as StaticData);
  } else {
    const kc = new KubeConfig();
    if (f.kubeconfig) kc.loadFromFile(f.kubeconfig);
    else kc.loadFromDefault();
    if (f['api-via-unix']) {
      const u = new URL(kc.getCurrentCluster()?.server ?? '');
      await tcpToUnix(u.hostname, Number(u.port), f['api-via-unix']);
    }
    kube = new KubeBackend({
      kc,
      network,
      id: f.id,
      discoveryBootEnv: config.discoveryBootEnv,
      dns: list(f.dns),
      ntp: list(f.ntp),
      ...(f.domain ? { domain: f.domain } : {}),
      search: list(f.search),
      routes: [],
      acknowledge: !f['no-ack'],
      log,
      metrics,
    });
    backend = kube;
  }
  const stateDir = f['state-dir'];
  mkdirSync(stateDir, { recursive: true });
  let pool: Pool | undefined;
  let poolKey = '';
  const getPool = (): Pool | undefined => {
    const r = backend.network()?.pool;
    const key = r ? `${r.first}-${r.last}` : '';
    if (key !== poolKey) {
      pool?.close();
      pool = r
        ? new Pool({
            first: r.first,
            last: r.last,
            journal: join(stateDir, `leases-${network}.jsonl`),
            isExcluded: (a) => a === serverIp || backend.isReserved(a),
          })
        : undefined;
      poolKey = key;
      log.info({ range: key }, 'discovery pool configured');
    }
    return pool;
  };
  // Networks reached through DHCP relays get their own pools (and journals), made on first use
  // and replaced when their range changes.
  const relayedPools = new Map<string, { key: string; pool: Pool | undefined }>();
  const poolFor = (net: NetworkConfig): Pool | undefined => {
    const r = net.pool;
    const key = r ? `${r.first}-${r.last}` : '';
    const had = relayedPools.get(net.name);
    if (had?.key === key) return had.pool;
    had?.pool?.close();
    const p = r
      ? new Pool({
          first: r.first,
          last: r.last,
          journal: join(stateDir, `leases-${net.name}.jsonl`),
          isExcluded: (a) => a === serverIp || backend.isReserved(a),
        })
      : undefined;
    relayedPools.set(net.name, { key, pool: p });
    log.info({ network: net.name, range: key }, 'relayed network pool configured');
    return p;
  };
  const http = new BootHttpServer({
    host: f['http-host'],
    port: httpPort,
    bootRoot: f['boot-root'],
    fileRoot: f['file-root'],
    serverIp,
    httpBase,
    discoveryBootEnv: config.discoveryBootEnv,
    backend,
    pool: getPool,
    metrics,
    log,
    ready: () => backend.ready(),
  });
  await http.start();
  if (kube) {
    if (!f['no-default-bootenvs']) await kube.ensureDefaultBootEnvs();
    await kube.start();
  }
  getPool();
  const dhcp = new DhcpServer({
    config,
    backend,
    pool: getPool,
    poolFor,
    metrics,
    log,
    port: num('dhcp-port', f['dhcp-port']),
    recvBufferBytes: num('recv-buffer-bytes', f['recv-buffer-bytes']),
    pxePort: num('pxe-port', f['pxe-port']),
  });
  await dhcp.start();
  const tftpPort = num('tftp-port', f['tftp-port']);
  const tftp =
    tftpPort > 0
      ? new TftpServer({
          host: serverIp,
          port: tftpPort,
          root: f['boot-root'],
          metrics,
          log,
        })
      : undefined;
  await tftp?.start();
  log.info({ network, serverIp, httpBase }, 'crowbar dhcp sidecar ready');
  const shutdown = (sig: string) => {
    log.info({ sig }, 'shutting down');
    void Promise.allSettled([dhcp.stop(), tftp?.stop(), http.stop(), kube?.stop()]).then(() => {
      pool?.close();
      for (const r of relayedPools.values()) r.pool?.close();
      process.exit(0);
    });
  };
  process.once('SIGTERM', () => {
    shutdown('SIGTERM');
  });
  process.once('SIGINT', () => {
    shutdown('SIGINT');
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
