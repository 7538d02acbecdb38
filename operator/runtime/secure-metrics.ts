/**
 * /metrics over HTTPS behind Kubernetes authentication and authorization, as controller-runtime's
 * secure metrics serving does (`filters.WithAuthenticationAndAuthorization`): the caller's bearer
 * token goes to a TokenReview; the user it names must be allowed `get` on the non-resource URL
 * `/metrics` by a SubjectAccessReview (RBAC: a ClusterRole with `nonResourceURLs: [/metrics]`).
 * No token or a token the API server does not accept: 401. Allowed to nobody: 403.
 * Decisions are cached for a short time per token (hashed), as kube-rbac-proxy does, so a
 * Prometheus scraping every few seconds costs two API calls per TTL, not per scrape.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { apiMessage } from '../kube/errors.ts';
import type { Logger } from '../log.ts';

export const METRICS_PATH = '/metrics';

/**
 * What the operator needs to ask those questions: the chart's `<release>-operator-metrics-auth`
 * ClusterRole grants exactly this (test/integration/helm.test.ts diffs them).
 */
export const METRICS_AUTH_RULES = [
  { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
  { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
];

/** What a scraper needs (the chart's `<release>-metrics-reader` ClusterRole, to bind). */
export const METRICS_READER_RULES = [{ nonResourceURLs: [METRICS_PATH], verbs: ['get'] }];

/** Who a token belongs to, as a TokenReview says. */
export interface Caller {
  user: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** The two questions the filter asks the API server; tests may answer them from a table. */
export interface MetricsAuth {
  /** The caller the token names, or undefined when the API server does not accept it. */
  authenticate(token: string): Promise<Caller | undefined>;
  /** Whether the caller may `verb` the non-resource URL `path`. */
  authorize(caller: Caller, verb: string, path: string): Promise<boolean>;
}

/** TokenReview and SubjectAccessReview against the API server (RBAC: create on both). */
export function kubeMetricsAuth(kc: KubeConfig): MetricsAuth {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  return {
    async authenticate(token) {
      const r = await authn.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
      });
      const u = r.status?.user;
      if (r.status?.authenticated !== true || u?.username === undefined) return undefined;
      return {
        user: u.username,
        ...(u.uid !== undefined ? { uid: u.uid } : {}),
        groups: u.groups ?? [],
        ...(u.extra !== undefined ? { extra: u.extra } : {}),
      };
    },
    async authorize(caller, verb, path) {
      const r = await authz.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: caller.user,
            groups: caller.groups,
            ...(caller.uid !== undefined ? { uid: caller.uid } : {}),
            ...(caller.extra !== undefined ? { extra: caller.extra } : {}),
            nonResourceAttributes: { path, verb },
          },
        },
      });
      return r.status?.allowed === true;
    },
  };
}

export type Decision =
  { status: 200; user: string } | { status: 401; reason: string } | { status: 403; user: string };

/** The bearer token of an Authorization header, or undefined (RFC 6750 §2.1). */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header ?? '');
  return m?.[1];
}

/** A small time-bounded cache of decisions by token hash; at most `max` entries. */
export class DecisionCache {
  private readonly entries = new Map<string, { d: Decision; until: number }>();
  private readonly ttlMs: number;
  private readonly max: number;
  constructor(ttlMs: number, max = 1024) {
    this.ttlMs = ttlMs;
    this.max = max;
  }
  static key(token: string): string {
    return createHash('sha256').update(token).digest('hex');
  }
  get(key: string, now: number): Decision | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.until <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return e.d;
  }
  set(key: string, d: Decision, now: number): void {
    if (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, { d, until: now + this.ttlMs });
  }
}

/** Authenticates and authorizes one request's Authorization header for GET `path`. */
export async function decide(
  auth: MetricsAuth,
  header: string | undefined,
  path: string,
  cache?: DecisionCache,
  now = Date.now(),
): Promise<Decision> {
  const token = bearerToken(header);
  if (token === undefined) return { status: 401, reason: 'no bearer token' };
  const key = DecisionCache.key(`${path}\0${token}`);
  const hit = cache?.get(key, now);
  if (hit) return hit;
  const caller = await auth.authenticate(token);
  const d: Decision =
    caller === undefined
      ? { status: 401, reason: 'the token was not accepted by the API server' }
      : (await auth.authorize(caller, 'get', path))
        ? { status: 200, user: caller.user }
        : { status: 403, user: caller.user };
  cache?.set(key, d, now);
  return d;
}

export interface SecureMetricsOptions {
  host: string;
  port: number;
  certFile: string;
  keyFile: string;
  registry: Registry;
  auth: MetricsAuth;
  log: Logger;
  /** How long a decision is reused for the same token; default 10 s. */
  cacheTtlMs?: number;
}

export function startSecureMetricsServer(
  o: SecureMetricsOptions,
): Promise<{ server: Server; port: number }> {
  const log = o.log.child({ component: 'metrics' });
  const cache = new DecisionCache(o.cacheTtlMs ?? 10_000);
  const server = createServer(
    { cert: readFileSync(o.certFile), key: readFileSync(o.keyFile), minVersion: 'TLSv1.2' },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (path !== METRICS_PATH) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      decide(o.auth, req.headers.authorization, path, cache)
        .then(async (d) => {
          if (d.status === 401) {
            res
              .writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' })
              .end(`unauthorized: ${d.reason}\n`);
            return;
          }
          if (d.status === 403) {
            log.info({ user: d.user }, 'metrics request refused');
            res
              .writeHead(403, { 'content-type': 'text/plain' })
              .end(`forbidden: user "${d.user}" may not get ${path}\n`);
            return;
          }
          const text = await o.registry.metrics();
          res.writeHead(200, { 'content-type': o.registry.contentType }).end(text);
        })
        .catch((err: unknown) => {
          log.warn({ err: apiMessage(err) }, 'metrics authentication failed');
          if (!res.headersSent)
            res.writeHead(500, { 'content-type': 'text/plain' }).end('authentication failed\n');
        });
    },
  );
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      resolve({ server, port: (server.address() as AddressInfo).port });
    });
  });
}
