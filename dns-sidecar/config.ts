/**
 * The sidecar's configuration from flags (--name=value; list flags may repeat or take commas) and
 * CROWBAR_DNS_* environment variables (flags win), validated with messages that say what to fix.
 */
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { makeAcl, type Acl } from './acl.ts';
import { canon } from './names.ts';
import type { NotifyTarget } from './notify.ts';
import type { Listen } from './server.ts';
import { DEFAULT_TIMERS, type DnsConfig } from './zones.ts';

export interface SidecarConfig {
  dns: DnsConfig;
  listen: Listen[];
  notify: NotifyTarget[];
  allowTransfer: Acl;
  allowTransferList: string[];
  healthHost: string;
  healthPort: number;
  kubeconfig: string | undefined;
  /** `kube` (informers) or `file:<path>` (manifests in a file). */
  source: { kind: 'kube' } | { kind: 'file'; path: string };
  stateFile: string | undefined;
  zoneDir: string | undefined;
  /** Bytes of finished answers kept per transport (0: no answer cache). */
  answerCacheBytes: number;
  /** UDP worker threads besides the main thread (udp-workers.ts). */
  udpWorkers: number;
  /** `native` (the batched C loop, falling back to dgram) or `dgram` (server.ts, ADR 0020). */
  udpEngine: 'native' | 'dgram';
}

const FLAGS: Record<string, string> = {
  kubeconfig: 'KUBECONFIG',
  listen: 'CROWBAR_DNS_LISTEN',
  domain: 'CROWBAR_DNS_DOMAIN',
  nameserver: 'CROWBAR_DNS_NAMESERVERS',
  hostmaster: 'CROWBAR_DNS_HOSTMASTER',
  ttl: 'CROWBAR_DNS_TTL',
  refresh: 'CROWBAR_DNS_REFRESH',
  retry: 'CROWBAR_DNS_RETRY',
  expire: 'CROWBAR_DNS_EXPIRE',
  minimum: 'CROWBAR_DNS_NEGATIVE_TTL',
  notify: 'CROWBAR_DNS_NOTIFY',
  'allow-transfer': 'CROWBAR_DNS_ALLOW_TRANSFER',
  'health-addr': 'CROWBAR_DNS_HEALTH_ADDR',
  source: 'CROWBAR_DNS_SOURCE',
  'state-file': 'CROWBAR_DNS_STATE_FILE',
  'zone-dir': 'CROWBAR_DNS_ZONE_DIR',
  'answer-cache-mb': 'CROWBAR_DNS_ANSWER_CACHE_MB',
  'udp-workers': 'CROWBAR_DNS_UDP_WORKERS',
  'udp-engine': 'CROWBAR_DNS_UDP_ENGINE',
};

function parseFlags(argv: readonly string[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const a of argv) {
    const match = /^--([a-z][-a-z0-9]*)=(.*)$/.exec(a);
    if (!match?.[1] || match[2] === undefined || !(match[1] in FLAGS)) {
      throw new Error(
        `unknown argument ${JSON.stringify(a)}: flags look like --name=value, one of ${Object.keys(FLAGS).join(', ')}`,
      );
    }
    m.set(match[1], [...(m.get(match[1]) ?? []), match[2]]);
  }
  return m;
}

/** host:port, [v6]:port, or a bare host with the default port. */
export function parseHostPort(s: string, defaultPort: number, what: string): Listen {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s);
  const host = m?.[1];
  const port = m?.[2] === undefined ? defaultPort : Number(m[2]);
  if (!host || isIP(host) === 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(
      `${what} must be an IP address with an optional port, e.g. 127.0.0.1:53 or [::1]:53; got ${JSON.stringify(s)}`,
    );
  }
  return { host, port };
}

function int(name: string, v: string | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

const HOSTNAME =
  /^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): SidecarConfig {
  const flags = parseFlags(argv);
  /** A flag's values (repeated and comma separated), else its variable's (comma separated). */
  const list = (name: string, sep = ','): string[] => {
    const v = flags.get(name) ?? (env[FLAGS[name] ?? ''] ? [env[FLAGS[name] ?? ''] ?? ''] : []);
    return v
      .flatMap((s) => s.split(sep))
      .map((s) => s.trim())
      .filter(Boolean);
  };
  const one = (name: string): string | undefined => list(name).at(-1);

  const domains = list('domain').map(canon);
  if (domains.length === 0) {
    throw new Error(
      '--domain (CROWBAR_DNS_DOMAIN) is required: the cluster domain, e.g. lab.crowbar.dev',
    );
  }
  for (const d of domains) {
    if (!HOSTNAME.test(d)) throw new Error(`--domain ${JSON.stringify(d)} is not a domain name`);
  }
  // --nameserver=ns1.lab.crowbar.dev=192.168.124.2,fd00::2 (repeatable; the variable takes ';').
  const nsSpecs = flags.get('nameserver') ?? (env['CROWBAR_DNS_NAMESERVERS'] ?? '').split(';');
  const nameservers = nsSpecs
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const [name = '', addrs = ''] = s.split('=');
      const addresses = addrs
        .split(',')
        .map((a) => a.trim())
        .filter(Boolean);
      if (!HOSTNAME.test(canon(name)) || addresses.some((a) => isIP(a) === 0)) {
        throw new Error(
          `--nameserver must be name=address[,address], e.g. ns1.lab.crowbar.dev=192.168.124.2; got ${JSON.stringify(s)}`,
        );
      }
      return { name: canon(name), addresses };
    });
  if (nameservers.length === 0)
    nameservers.push({ name: `ns1.${domains[0] ?? ''}`, addresses: [] });

  const listen = list('listen').map((s) => parseHostPort(s, 53, '--listen'));
  if (listen.length === 0) listen.push({ host: '0.0.0.0', port: 53 });
  const notify = list('notify').map((s) => parseHostPort(s, 53, '--notify'));
  const allowTransferList = list('allow-transfer');
  let allowTransfer: Acl;
  try {
    allowTransfer = makeAcl(allowTransferList);
  } catch (err) {
    throw new Error(
      `--allow-transfer must list addresses or prefixes, e.g. 10.0.0.0/8,::1; got ${JSON.stringify(allowTransferList)}`,
      { cause: err },
    );
  }
  const health = parseHostPort(one('health-addr') ?? '0.0.0.0:8081', 8081, '--health-addr');
  const src = one('source') ?? 'kube';
  let source: SidecarConfig['source'];
  if (src === 'kube') source = { kind: 'kube' };
  else if (src.startsWith('file:') && src.length > 5) source = { kind: 'file', path: src.slice(5) };
  else throw new Error(`--source must be kube or file:<path>, got ${JSON.stringify(src)}`);

  const engine = one('udp-engine') ?? 'native';
  if (engine !== 'native' && engine !== 'dgram') {
    throw new Error(`--udp-engine must be native or dgram, got ${JSON.stringify(engine)}`);
  }

  const day = 86_400;
  return {
    dns: {
      forwardZones: domains,
      nameservers,
      hostmaster: canon(one('hostmaster') ?? `hostmaster.${domains[0] ?? ''}`),
      ttl: int('ttl', one('ttl'), DEFAULT_TIMERS.ttl, 0, 7 * day),
      refresh: int('refresh', one('refresh'), DEFAULT_TIMERS.refresh, 1, 28 * day),
      retry: int('retry', one('retry'), DEFAULT_TIMERS.retry, 1, 28 * day),
      expire: int('expire', one('expire'), DEFAULT_TIMERS.expire, 1, 365 * day),
      minimum: int('minimum', one('minimum'), DEFAULT_TIMERS.minimum, 0, day),
    },
    listen,
    notify,
    allowTransfer,
    allowTransferList,
    healthHost: health.host,
    healthPort: health.port,
    kubeconfig: one('kubeconfig'),
    source,
    stateFile: one('state-file'),
    zoneDir: one('zone-dir'),
    answerCacheBytes: int('answer-cache-mb', one('answer-cache-mb'), 32, 0, 4096) * 2 ** 20,
    // One socket loop per core, the main thread's included (as BIND runs a thread per core).
    udpWorkers: int('udp-workers', one('udp-workers'), availableParallelism() - 1, 0, 63),
    udpEngine: engine,
  };
}
