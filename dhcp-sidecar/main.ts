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
import { Dhcp6Server } from './server6.ts';
import { Radvd } from './radvd.ts';
import { duidUuid, normalizeIp6 } from './codec6.ts';
import { createHash } from 'node:crypto';
import { TftpServer } from './tftp.ts';
import { checkCaPem } from './ca-initrd.ts';

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
    // native: port 67 through the batched C loop (ADR 0023) when it loads, else dgram; dgram: dgram.
    'udp-engine': { type: 'string', default: env['CROWBAR_DHCP_UDP_ENGINE'] ?? 'native' },
    'discovery-bootenv': { type: 'string', default: 'sledgehammer' },
    // The node API's CA certificate (PEM): served as an initrd with every netbooted kernel so
    // machines verify the node API (ADR 0019). Empty: none (the discovery image then refuses).
    'api-ca-file': { type: 'string', default: env['CROWBAR_API_CA_FILE'] ?? '' },
    // DHCPv6 (on when --server-ip6 is given): the sidecar's IPv6 address on the provisioning link,
    // the interfaces to join ff02::1:2 on, option 23 servers, the port (0: off).
    'server-ip6': { type: 'string', default: env['CROWBAR_DHCP_SERVER_IP6'] ?? '' },
    'dhcp6-interfaces': { type: 'string', default: env['CROWBAR_DHCP6_INTERFACES'] ?? '' },
    'dhcp6-port': { type: 'string', default: env['CROWBAR_DHCP6_PORT'] ?? '547' },
    dns6: { type: 'string', default: env['CROWBAR_DHCP_DNS6'] ?? '' },
    'no-rapid-commit': { type: 'boolean', default: false },
    // Router advertisements (M and O flags, the Network's v6prefix on-link) by radvd on this
    // interface (ADR 0015); empty: none (another router sends them).
    'ra-interface': { type: 'string', default: env['CROWBAR_RA_INTERFACE'] ?? '' },
    'ra-default-router': { type: 'boolean', default: false },
    // No DHCPv6 server on the link: the advertisements carry neither M nor O, so clients (iPXE
    // waits 16 s for IPv6 when nothing answers its solicitations) stop at them (ADR 0027).
    'ra-no-dhcp6': { type: 'boolean', default: env['CROWBAR_RA_NO_DHCP6'] === 'true' },
    'ra-interval': { type: 'string', default: env['CROWBAR_RA_INTERVAL'] ?? '30' },
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
  const engine = f['udp-engine'];
  if (engine !== 'native' && engine !== 'dgram')
    throw new Error(
      `--udp-engine (CROWBAR_DHCP_UDP_ENGINE) must be native or dgram, got ${engine}`,
    );
  if (f['api-ca-file'] !== '') {
    try {
      checkCaPem(readFileSync(f['api-ca-file'], 'utf8'));
    } catch (e) {
      throw new Error(`--api-ca-file ${f['api-ca-file']}: ${(e as Error).message}`, { cause: e });
    }
  } else {
    log.warn(
      {},
      'no --api-ca-file: machines get no CA for the node API, and the discovery image will not register',
    );
  }
  const httpBase = `http://${serverIp}:${httpPort}`;
  const serverIp6 = f['server-ip6'] === '' ? undefined : normalizeIp6(f['server-ip6']);
  if (f['server-ip6'] !== '' && serverIp6 === undefined)
    throw new Error(
      '--server-ip6 (CROWBAR_DHCP_SERVER_IP6) must be this sidecar’s IPv6 address on the provisioning interface',
    );
  for (const a of list(f.dns6))
    if (normalizeIp6(a) === undefined) throw new Error(`--dns6: ${a} is not an IPv6 address`);
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
      dns6: list(f.dns6),
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
    // With DHCPv6 on, IPv6-only clients fetch over HTTP too: listen on both families.
    host: serverIp6 !== undefined && f['http-host'] === '0.0.0.0' ? '::' : f['http-host'],
    port: httpPort,
    bootRoot: f['boot-root'],
    fileRoot: f['file-root'],
    serverIp,
    httpBase,
    ...(serverIp6 !== undefined
      ? { serverIp6, httpBase6: `http://[${serverIp6}]:${String(httpPort)}` }
      : {}),
    discoveryBootEnv: config.discoveryBootEnv,
    ...(f['api-ca-file'] !== '' ? { caFile: f['api-ca-file'] } : {}),
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
    engine,
  });
  await dhcp.start();
  const dhcp6Port = num('dhcp6-port', f['dhcp6-port']);
  const dhcp6 =
    serverIp6 !== undefined && dhcp6Port > 0
      ? new Dhcp6Server({
          config: {
            // A stable DUID-UUID (RFC 6355): the same for this network and address across restarts.
            serverDuid: duidUuid(
              createHash('sha256').update(`crowbar-dhcp6/${network}/${serverIp6}`).digest(),
            ),
            serverIp6,
            httpBase6: `http://[${serverIp6}]:${httpPort}`,
            discoveryBootEnv: config.discoveryBootEnv,
            leaseSeconds: config.leaseSeconds,
            rapidCommit: !f['no-rapid-commit'],
          },
          backend,
          metrics,
          log,
          interfaces: list(f['dhcp6-interfaces']),
          port: dhcp6Port,
        })
      : undefined;
  await dhcp6?.start();
  const radvd = f['ra-interface']
    ? new Radvd({
        stateDir,
        ra: {
          iface: f['ra-interface'],
          defaultRouter: f['ra-default-router'],
          maxIntervalSeconds: num('ra-interval', f['ra-interval']),
          dhcp6: !f['ra-no-dhcp6'],
        },
        log,
      })
    : undefined;
  // The Network can change under us (its v6prefix resolved, edited): re-render every few seconds;
  // radvd restarts only when its configuration text changes.
  radvd?.update(backend.network());
  const raTimer = radvd
    ? setInterval(() => {
        radvd.update(backend.network());
      }, 5000).unref()
    : undefined;
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
  // DHCPv6 clients get tftp://[server-ip6]/... URLs: the same files on the IPv6 address.
  const tftp6 =
    tftpPort > 0 && dhcp6 !== undefined && serverIp6 !== undefined
      ? new TftpServer({ host: serverIp6, port: tftpPort, root: f['boot-root'], metrics, log })
      : undefined;
  await tftp6?.start();
  log.info({ network, serverIp, httpBase }, 'crowbar dhcp sidecar ready');
  const shutdown = (sig: string) => {
    log.info({ sig }, 'shutting down');
    if (raTimer) clearInterval(raTimer);
    radvd?.stop();
    void Promise.allSettled([
      dhcp.stop(),
      dhcp6?.stop(),
      tftp?.stop(),
      tftp6?.stop(),
      http.stop(),
      kube?.stop(),
    ]).then(() => {
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
