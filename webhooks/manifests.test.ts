import { describe, expect, it } from 'vitest';
import { validatingWebhookConfiguration } from './manifests.ts';

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('validatingWebhookConfiguration', () => {
  it('points every webhook at the URL with the CA bundle and scopes it to crowbar.dev', () => {
    const cfg = validatingWebhookConfiguration({
      clientConfig: { url: 'https://127.0.0.1:9443/validate', caPem: CA },
    });
    expect(cfg.metadata?.name).toBe('crowbar.dev');
    expect(cfg.webhooks?.map((w) => w.name)).toEqual([
      'roles.crowbar.dev',
      'noderoles.crowbar.dev',
      'deployments.crowbar.dev',
      'networks.crowbar.dev',
      'nodes.crowbar.dev',
    ]);
    for (const w of cfg.webhooks ?? []) {
      expect(w).toMatchObject({
        clientConfig: {
          url: 'https://127.0.0.1:9443/validate',
          caBundle: Buffer.from(CA).toString('base64'),
        },
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        failurePolicy: 'Fail',
        timeoutSeconds: 5,
      });
      for (const r of w.rules ?? []) {
        expect(r.apiGroups).toEqual(['crowbar.dev']);
        expect(r.resources?.every((x) => !x.includes('/'))).toBe(true); // no /status
      }
    }
    expect(cfg.webhooks?.map((w) => w.rules?.[0]?.operations)).toEqual([
      ['CREATE', 'UPDATE', 'DELETE'],
      ['CREATE', 'UPDATE', 'DELETE'],
      ['UPDATE', 'DELETE'],
      ['CREATE', 'UPDATE'],
      ['CREATE', 'UPDATE', 'DELETE'],
    ]);
  });

  it('uses a service reference for in-cluster use, leaving caBundle to an injector', () => {
    const cfg = validatingWebhookConfiguration({
      name: 'crowbar-webhook',
      clientConfig: { service: { namespace: 'crowbar', name: 'crowbar-webhook' } },
    });
    expect(cfg.metadata?.name).toBe('crowbar-webhook');
    expect(cfg.webhooks?.[0]?.clientConfig).toEqual({
      service: { namespace: 'crowbar', name: 'crowbar-webhook', path: '/validate', port: 443 },
    });
  });
});
