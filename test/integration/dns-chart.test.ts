/**
 * The Helm chart runs the DNS sidecar (issue 11): rendered with the real `helm`, it has a
 * read-only ServiceAccount, the sidecar's flags from the values, DNS on UDP and TCP behind a
 * Service on port 53, and health probes; bad values are refused.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadAll } from 'js-yaml';
import { describe, expect, inject, it } from 'vitest';
import { bin } from '../harness/bins.ts';

const CHART = join(import.meta.dirname, '..', '..', 'charts', 'crowbar');
const run = promisify(execFile);
const cpDir = inject('cpDir');
const helm = async (...args: string[]): Promise<string> =>
  (
    await run(bin('helm'), args, {
      timeout: 60_000,
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(cpDir, 'helm-cache'),
        HELM_CONFIG_HOME: join(cpDir, 'helm-config'),
        HELM_DATA_HOME: join(cpDir, 'helm-data'),
      },
    })
  ).stdout;

interface Doc {
  kind: string;
  metadata: { name: string };
  rules?: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
  spec?: {
    ports?: { port: number; protocol?: string }[];
    template?: {
      spec?: {
        serviceAccountName?: string;
        containers?: { command?: string[]; args?: string[]; ports?: { protocol?: string }[] }[];
      };
    };
  };
}

const render = async (...set: string[]) =>
  (
    loadAll(await helm('template', 't', CHART, ...set.flatMap((s) => ['--set', s]))) as Doc[]
  ).filter(Boolean);

describe('the chart runs the DNS sidecar', () => {
  it('renders its Deployment, Service and read-only RBAC from the values', async () => {
    const docs = await render(
      'dns.domain=lab.crowbar.dev',
      'dns.notify[0]=10.0.0.53:53',
      'dns.allowTransfer[0]=10.0.0.0/8',
      'dns.nameservers[0].name=ns1.lab.crowbar.dev',
      'dns.nameservers[0].addresses[0]=192.168.124.10',
    );
    const dep = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 't-dns');
    const c = dep?.spec?.template?.spec?.containers?.[0];
    expect(c?.command).toEqual(['node', 'dns-sidecar/main.ts']);
    expect(c?.args).toEqual(
      expect.arrayContaining([
        '--domain=lab.crowbar.dev',
        '--listen=0.0.0.0:5353',
        '--notify=10.0.0.53:53',
        '--allow-transfer=10.0.0.0/8',
        '--nameserver=ns1.lab.crowbar.dev=192.168.124.10',
        '--udp-workers=1',
      ]),
    );
    expect(dep?.spec?.template?.spec?.serviceAccountName).toBe('t-dns');
    const role = docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 't-dns');
    expect(role?.rules).toEqual([
      {
        apiGroups: ['crowbar.dev'],
        resources: ['networks', 'networkallocations', 'nodes'],
        verbs: ['get', 'list', 'watch'],
      },
    ]);
    const svc = docs.find((d) => d.kind === 'Service' && d.metadata.name === 't-dns');
    expect(svc?.spec?.ports?.filter((p) => p.port === 53).map((p) => p.protocol)).toEqual([
      'UDP',
      'TCP',
    ]);
  });

  it('leaves it out when disabled and refuses a bad domain', async () => {
    const docs = await render('dns.enabled=false');
    expect(docs.some((d) => d.metadata.name === 't-dns')).toBe(false);
    await expect(render('dns.domain=Not_A_Domain')).rejects.toThrow(/dns\/domain/);
  });
});
