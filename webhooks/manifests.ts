/**
 * The ValidatingWebhookConfiguration that points the API server at this webhook. Tests register
 * it with a URL on 127.0.0.1; the Helm chart renders it with a Service reference.
 */
import type {
  V1RuleWithOperations,
  V1ValidatingWebhook,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import { GROUP, VERSION } from '../generated/crowbar.ts';
import { VALIDATE_PATH } from './server.ts';

export const WEBHOOK_CONFIGURATION_NAME = 'crowbar.dev';

/** How the API server reaches the webhook. */
export type ClientConfig =
  | {
      /** `https://host:port/validate`; no user info, query or fragment. */
      readonly url: string;
      /** PEM of the CA that signed the serving certificate. */
      readonly caPem: string;
    }
  | {
      readonly service: {
        readonly namespace: string;
        readonly name: string;
        readonly port?: number;
      };
      /** PEM of the CA; omit when a CA injector (cert-manager) fills caBundle in. */
      readonly caPem?: string;
    };

/**
 * Operations judged per resource: the rules of decide.ts, main resources only (no /status).
 * charts/crowbar/templates/webhook.yaml renders the same list; keep the two in step.
 */
export const WEBHOOK_RULES: readonly {
  readonly resource: 'roles' | 'noderoles' | 'deployments' | 'networks' | 'nodes';
  readonly operations: readonly ('CREATE' | 'UPDATE' | 'DELETE')[];
}[] = [
  { resource: 'roles', operations: ['CREATE', 'UPDATE', 'DELETE'] },
  { resource: 'noderoles', operations: ['CREATE', 'UPDATE', 'DELETE'] },
  { resource: 'deployments', operations: ['UPDATE', 'DELETE'] },
  { resource: 'networks', operations: ['CREATE', 'UPDATE'] },
  { resource: 'nodes', operations: ['CREATE', 'UPDATE', 'DELETE'] },
];

/**
 * Builds the configuration: one webhook per resource (so each has its own name in API server
 * errors and metrics), all calling /validate. sideEffects None (dry runs are judged too),
 * admissionReviewVersions [v1], failurePolicy Fail (an unreachable webhook refuses writes
 * rather than letting a cycle or a bad delete through), timeoutSeconds 5.
 */
export function validatingWebhookConfiguration(opts: {
  clientConfig: ClientConfig;
  name?: string;
  labels?: Record<string, string>;
  timeoutSeconds?: number;
  failurePolicy?: 'Fail' | 'Ignore';
}): V1ValidatingWebhookConfiguration {
  const cc = opts.clientConfig;
  const caBundle =
    cc.caPem !== undefined ? Buffer.from(cc.caPem, 'utf8').toString('base64') : undefined;
  const clientConfig =
    'url' in cc
      ? { url: cc.url, caBundle: Buffer.from(cc.caPem, 'utf8').toString('base64') }
      : {
          service: {
            namespace: cc.service.namespace,
            name: cc.service.name,
            path: VALIDATE_PATH,
            port: cc.service.port ?? 443,
          },
          ...(caBundle !== undefined ? { caBundle } : {}),
        };
  const webhooks: V1ValidatingWebhook[] = WEBHOOK_RULES.map(({ resource, operations }) => {
    const rule: V1RuleWithOperations = {
      apiGroups: [GROUP],
      apiVersions: [VERSION],
      resources: [resource],
      operations: [...operations],
      scope: 'Cluster',
    };
    return {
      name: `${resource}.${GROUP}`,
      clientConfig,
      rules: [rule],
      sideEffects: 'None',
      admissionReviewVersions: ['v1'],
      failurePolicy: opts.failurePolicy ?? 'Fail',
      matchPolicy: 'Equivalent',
      timeoutSeconds: opts.timeoutSeconds ?? 5,
    };
  });
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: {
      name: opts.name ?? WEBHOOK_CONFIGURATION_NAME,
      ...(opts.labels ? { labels: opts.labels } : {}),
    },
    webhooks,
  };
}
