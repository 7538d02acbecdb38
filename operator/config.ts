/** Operator configuration from flags (--name=value) and environment variables, validated. */
import { hostname } from 'node:os';

export interface OperatorConfig {
  kubeconfig: string | undefined;
  healthHost: string;
  healthPort: number;
  /**
   * `--metrics-addr`: /metrics over HTTPS with Kubernetes authentication and authorization
   * (operator/runtime/secure-metrics.ts), and not on the health server. Undefined: /metrics is
   * plain HTTP on the health server (the lab and tests).
   */
  metrics: { host: string; port: number; certFile: string; keyFile: string } | undefined;
  maxConcurrentRuns: number;
  executor: 'inline' | 'job';
  leaderElection: boolean;
  leaseNamespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  workers: number;
  /** Root's SSH key for the script jig and aliveness: a Secret `<namespace>/<name>` ... */
  sshKeySecret: string | undefined;
  /** ... or a file (the lab). */
  sshKeyFile: string | undefined;
  /** Re-check period of nodes with pending work and of dead nodes (§10.1). */
  aliveIntervalMs: number;
  /** The node self-report API (operator/api/). */
  apiHost: string;
  apiPort: number;
  /** Its serving certificate and key (PEM files); plain HTTP when unset. */
  apiTlsCert: string | undefined;
  apiTlsKey: string | undefined;
  /** --executor=job: the namespace of run Jobs (default: the operator's own, POD_NAMESPACE). */
  jobNamespace: string;
  /** --executor=job: the image of run Jobs (the operator image; required with the job executor). */
  jobImage: string | undefined;
  /** --executor=job: how long a finished run Job is kept. */
  jobTtlSeconds: number;
  /** The provisioning Network: registration is accepted only from its subnet (operator/provisioner). */
  provisionNetwork: string;
  /** DNS domain of discovered Nodes (`d<mac>.<domain>`); registration is refused without it. */
  domain: string | undefined;
  /** The boot environment a registered machine is given (its next PXE boot; §8.1). */
  discoveryBootEnv: string;
  /** The provisioner API's URL as machines reach it (installer kernel arguments, preseed). */
  provisionerUrl: string | undefined;
  /** The test jig's journal file (the chaos suite): executions outlive the operator there. */
  testJigJournal: string | undefined;
  /**
   * V8's heap growth between major collections, in percent of the live heap (0: V8's own, which
   * lets the heap grow up to 4x its live size). See operator/runtime/heap.ts and ADR 0021.
   */
  heapGrowthPercent: number;
  /**
   * How long an install run resumed after an operator restart waits for the installer's sign of
   * life (its per-node file fetch) before it power cycles again (ADR 0022), from the moment the
   * interrupted run asked for the cycle.
   */
  installRebootEvidenceMs: number;
}

/** Measured in ADR 0021: the default that keeps 1,000 x 10 under its memory goal. */
export const DEFAULT_HEAP_GROWTH_PERCENT = 30;

function flags(argv: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of argv) {
    const match = /^--([a-z][-a-z0-9]*)(?:=(.*))?$/.exec(a);
    if (!match?.[1])
      throw new Error(`unknown argument ${JSON.stringify(a)}: flags look like --name=value`);
    m.set(match[1], match[2] ?? 'true');
  }
  return m;
}

function int(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

function bool(name: string, v: string): boolean {
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new Error(`--${name} must be true or false, got ${JSON.stringify(v)}`);
}

const KNOWN = new Set([
  'kubeconfig',
  'health-addr',
  'metrics-addr',
  'metrics-cert',
  'metrics-key',
  'max-concurrent-runs',
  'executor',
  'leader-elect',
  'lease-namespace',
  'lease-name',
  'identity',
  'lease-duration-ms',
  'renew-deadline-ms',
  'retry-period-ms',
  'workers',
  'ssh-key-secret',
  'ssh-key-file',
  'alive-interval-ms',
  'api-addr',
  'api-tls-cert',
  'api-tls-key',
  'job-namespace',
  'job-image',
  'job-ttl-seconds',
  'provision-network',
  'domain',
  'provisioner-url',
  'discovery-bootenv',
  'test-jig-journal',
  'heap-growth-percent',
  'install-reboot-evidence-ms',
  'api-allow-plain-http',
]);

/** 127.0.0.0/8, ::1 or localhost: an address only this machine reaches. */
function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const f = flags(argv);
  for (const k of f.keys()) {
    if (!KNOWN.has(k))
      throw new Error(
        `unknown flag --${k}; known flags: ${[...KNOWN].map((x) => `--${x}`).join(', ')}`,
      );
  }
  const get = (flag: string, envName: string, def: string): string =>
    f.get(flag) ?? env[envName] ?? def;
  const [healthHost = '', healthPortStr = ''] = get(
    'health-addr',
    'CROWBAR_HEALTH_ADDR',
    '0.0.0.0:8080',
  ).split(/:(?=[^:]*$)/);
  const executor = get('executor', 'CROWBAR_EXECUTOR', 'inline');
  if (executor !== 'inline' && executor !== 'job')
    throw new Error(`--executor must be inline or job, got ${JSON.stringify(executor)}`);
  const leaseDurationMs = int(
    'lease-duration-ms',
    get('lease-duration-ms', 'CROWBAR_LEASE_DURATION_MS', '15000'),
    1000,
    600_000,
  );
  const renewDeadlineMs = int(
    'renew-deadline-ms',
    get('renew-deadline-ms', 'CROWBAR_RENEW_DEADLINE_MS', '10000'),
    500,
    600_000,
  );
  const retryPeriodMs = int(
    'retry-period-ms',
    get('retry-period-ms', 'CROWBAR_RETRY_PERIOD_MS', '2000'),
    100,
    60_000,
  );
  const [apiHost = '', apiPortStr = ''] = get('api-addr', 'CROWBAR_API_ADDR', '0.0.0.0:8081').split(
    /:(?=[^:]*$)/,
  );
  const sshKeySecret = f.get('ssh-key-secret') ?? env['CROWBAR_SSH_KEY_SECRET'];
  const sshKeyFile = f.get('ssh-key-file') ?? env['CROWBAR_SSH_KEY_FILE'];
  if (sshKeySecret && sshKeyFile)
    throw new Error('--ssh-key-secret and --ssh-key-file exclude each other: pass one');
  const domain = get('domain', 'CROWBAR_DOMAIN', '').toLowerCase();
  if (
    domain !== '' &&
    !/^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(domain)
  )
    throw new Error(
      `--domain must be a DNS domain such as lab.example.com, got ${JSON.stringify(domain)}`,
    );
  const jobImage = get('job-image', 'CROWBAR_JOB_IMAGE', '') || undefined;
  const apiTlsCert = get('api-tls-cert', 'CROWBAR_API_TLS_CERT', '') || undefined;
  const apiTlsKey = get('api-tls-key', 'CROWBAR_API_TLS_KEY', '') || undefined;
  if ((apiTlsCert === undefined) !== (apiTlsKey === undefined))
    throw new Error('--api-tls-cert and --api-tls-key go together: pass both or neither');
  if (executor === 'job' && jobImage === undefined)
    throw new Error(
      '--executor=job needs --job-image=<the operator image> (or CROWBAR_JOB_IMAGE): run Jobs use it',
    );
  const metricsAddr = get('metrics-addr', 'CROWBAR_METRICS_ADDR', '');
  const metricsCert = get('metrics-cert', 'CROWBAR_METRICS_CERT', '');
  const metricsKey = get('metrics-key', 'CROWBAR_METRICS_KEY', '');
  let metrics: OperatorConfig['metrics'];
  if (metricsAddr !== '') {
    if (metricsCert === '' || metricsKey === '')
      throw new Error(
        '--metrics-addr serves /metrics over TLS: pass --metrics-cert and --metrics-key (PEM files)',
      );
    const [host = '', portStr = ''] = metricsAddr.split(/:(?=[^:]*$)/);
    metrics = {
      host,
      port: int('metrics-addr', portStr, 0, 65535),
      certFile: metricsCert,
      keyFile: metricsKey,
    };
  } else if (metricsCert !== '' || metricsKey !== '') {
    throw new Error('--metrics-cert and --metrics-key need --metrics-addr');
  }
  if (renewDeadlineMs >= leaseDurationMs)
    throw new Error('--renew-deadline-ms must be shorter than --lease-duration-ms');
  if (retryPeriodMs >= renewDeadlineMs)
    throw new Error('--retry-period-ms must be shorter than --renew-deadline-ms');
  // Node tokens travel in this API's requests: in clear text only where no other machine can
  // listen (the tests and a lab bound to loopback). Anywhere else it is HTTPS or nothing.
  // --api-allow-plain-http: the tests whose stand-in machines are namespaces on this host, not
  // machines with the boot sidecar's CA (provision-chaos, bench-provision); never the chart's.
  const allowPlain =
    get('api-allow-plain-http', 'CROWBAR_API_ALLOW_PLAIN_HTTP', 'false') === 'true';
  if (apiTlsCert === undefined && !isLoopback(apiHost) && !allowPlain)
    throw new Error(
      `the node API on ${apiHost}:${apiPortStr} carries node tokens: pass --api-tls-cert and --api-tls-key (PEM files; the chart makes them), or listen on loopback only (--api-addr=127.0.0.1:PORT); --api-allow-plain-http=true serves them in clear text anyway (closed test networks only)`,
    );
  return {
    kubeconfig: f.get('kubeconfig') ?? env['KUBECONFIG'],
    healthHost,
    healthPort: int('health-addr', healthPortStr, 0, 65535),
    metrics,
    maxConcurrentRuns: int(
      'max-concurrent-runs',
      get('max-concurrent-runs', 'CROWBAR_MAX_CONCURRENT_RUNS', '10'),
      1,
      1000,
    ),
    executor,
    leaderElection: bool('leader-elect', get('leader-elect', 'CROWBAR_LEADER_ELECT', 'true')),
    leaseNamespace: get('lease-namespace', 'POD_NAMESPACE', 'default'),
    leaseName: get('lease-name', 'CROWBAR_LEASE_NAME', 'crowbar-operator'),
    identity: get('identity', 'POD_NAME', `${hostname()}-${process.pid}`),
    leaseDurationMs,
    renewDeadlineMs,
    retryPeriodMs,
    workers: int('workers', get('workers', 'CROWBAR_WORKERS', '4'), 1, 64),
    sshKeySecret: sshKeySecret || undefined,
    sshKeyFile: sshKeyFile || undefined,
    aliveIntervalMs: int(
      'alive-interval-ms',
      get('alive-interval-ms', 'CROWBAR_ALIVE_INTERVAL_MS', '15000'),
      200,
      3_600_000,
    ),
    apiHost,
    apiPort: int('api-addr', apiPortStr, 0, 65535),
    apiTlsCert,
    apiTlsKey,
    jobNamespace: get('job-namespace', 'POD_NAMESPACE', 'default'),
    jobImage,
    jobTtlSeconds: int(
      'job-ttl-seconds',
      get('job-ttl-seconds', 'CROWBAR_JOB_TTL_SECONDS', '3600'),
      0,
      30 * 86_400,
    ),
    provisionNetwork: get('provision-network', 'CROWBAR_PROVISION_NETWORK', 'admin'),
    domain: domain === '' ? undefined : domain,
    discoveryBootEnv: get('discovery-bootenv', 'CROWBAR_DISCOVERY_BOOTENV', 'sledgehammer'),
    provisionerUrl: get('provisioner-url', 'CROWBAR_PROVISIONER_URL', '') || undefined,
    testJigJournal: get('test-jig-journal', 'CROWBAR_TEST_JIG_JOURNAL', '') || undefined,
    heapGrowthPercent: int(
      'heap-growth-percent',
      get(
        'heap-growth-percent',
        'CROWBAR_HEAP_GROWTH_PERCENT',
        String(DEFAULT_HEAP_GROWTH_PERCENT),
      ),
      0,
      1000,
    ),
    installRebootEvidenceMs: int(
      'install-reboot-evidence-ms',
      get('install-reboot-evidence-ms', 'CROWBAR_INSTALL_REBOOT_EVIDENCE_MS', '900000'),
      1000,
      86_400_000,
    ),
  };
}
