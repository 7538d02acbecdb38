/** Webhook server configuration from flags (--name=value) and environment variables, validated. */

export interface WebhookConfig {
  kubeconfig: string | undefined;
  host: string;
  port: number;
  tlsCert: string;
  tlsKey: string;
  /** Largest AdmissionReview body accepted; the API server caps objects at 3 MiB. */
  maxBodyBytes: number;
}

export const DEFAULT_MAX_BODY_BYTES = 3 * 1024 * 1024;

const KNOWN = ['kubeconfig', 'listen', 'tls-cert', 'tls-key', 'max-body-bytes'] as const;
type Flag = (typeof KNOWN)[number];

/** Parses `host:port`, `[v6]:port` or `:port` (all addresses). */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new Error(
      `--listen must be host:port, [ipv6]:port or :port (0 picks a free port), got ${JSON.stringify(v)}`,
    );
  }
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): WebhookConfig {
  const f = new Map<Flag, string>();
  for (const a of argv) {
    const match = /^--([a-z][-a-z0-9]*)=(.*)$/.exec(a);
    const name = match?.[1];
    if (name === undefined || match?.[2] === undefined) {
      throw new Error(`unknown argument ${JSON.stringify(a)}: flags look like --name=value`);
    }
    if (!(KNOWN as readonly string[]).includes(name)) {
      throw new Error(
        `unknown flag --${name}; known flags: ${KNOWN.map((k) => `--${k}`).join(', ')}`,
      );
    }
    f.set(name as Flag, match[2]);
  }
  const get = (flag: Flag, envName: string): string | undefined => f.get(flag) ?? env[envName];
  const { host, port } = parseListen(get('listen', 'CROWBAR_WEBHOOK_LISTEN') ?? '0.0.0.0:9443');
  const tlsCert = get('tls-cert', 'CROWBAR_WEBHOOK_TLS_CERT');
  const tlsKey = get('tls-key', 'CROWBAR_WEBHOOK_TLS_KEY');
  if (!tlsCert || !tlsKey) {
    throw new Error(
      '--tls-cert and --tls-key are required: the API server calls admission webhooks over HTTPS only',
    );
  }
  const maxRaw = get('max-body-bytes', 'CROWBAR_WEBHOOK_MAX_BODY_BYTES');
  const maxBodyBytes = maxRaw === undefined ? DEFAULT_MAX_BODY_BYTES : Number(maxRaw);
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1024 || maxBodyBytes > 64 * 1024 * 1024) {
    throw new Error(
      `--max-body-bytes must be an integer from 1024 to 67108864, got ${JSON.stringify(maxRaw)}`,
    );
  }
  // Without --kubeconfig, client-node's default applies: $KUBECONFIG, ~/.kube/config, in-cluster.
  const kubeconfig = f.get('kubeconfig');
  return { kubeconfig: kubeconfig || undefined, host, port, tlsCert, tlsKey, maxBodyBytes };
}
