/**
 * The admission webhook as the real API server sees it: webhooks/main.ts runs as a process with
 * a serving certificate from the test CA, a ValidatingWebhookConfiguration points the API server
 * at https://127.0.0.1:PORT/validate, and refusals come back through kubectl-visible errors.
 *
 * The API server is shared with the files that run after this one, so the configuration is
 * removed (and seen to stop firing) before the process stops.
 */
import { readFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  GROUP,
  PLURALS,
  VERSION,
  type NetworkSpec,
  type NodeRoleStatus,
  type NodeSpec,
} from '../../generated/crowbar.ts';
import { allocationName } from '../../operator/ipam/name.ts';
import { apiCode, apiMessage, isNotFound } from '../../operator/kube/errors.ts';
import { validatingWebhookConfiguration } from '../../webhooks/manifests.ts';
import { ensureDefaultBootEnvs } from '../../operator/default-bootenvs.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { ROOT } from '../harness/operator.ts';
import { issueLeaf } from '../harness/pki.ts';
import { freePort, startProcess, waitFor, type Started } from '../harness/process.ts';

const FM = 'webhook-test';
const client = testClient();
const admission = client.kc.makeApiClient(AdmissionregistrationV1Api);
const id = uid();
const CONFIG_NAME = 'crowbar.dev';

let proc: Started | undefined;
let port = 0;
let ca = '';
let webhookLog = '';
let registered = false;
let createdSystem = false;
const cleanup: {
  kind: 'NetworkAllocation' | 'NodeRole' | 'Role' | 'Node' | 'Deployment' | 'Network' | 'BootEnv';
  name: string;
}[] = [];

const fqdn = (n: string) => `${n}-${id}.lab.example.com`;
const r = (n: string) => `${n}-${id}`;

function https(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    httpsGet({ host: '127.0.0.1', port, path, ca, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
    }).on('error', () => {
      resolve({ status: 0, body: '' });
    });
  });
}

/** The API server's refusal of `write`: its HTTP code and message. */
async function refusal(write: Promise<unknown>): Promise<{ code: number; message: string }> {
  let written: unknown;
  try {
    written = await write;
  } catch (e) {
    return { code: apiCode(e) ?? 0, message: apiMessage(e) };
  }
  // Say whether the webhook saw the request at all: its log is the only witness.
  const name = (written as { metadata?: { name?: string } } | undefined)?.metadata?.name ?? '';
  const seen = readFileSync(webhookLog, 'utf8')
    .split('\n')
    .filter((l) => name !== '' && l.includes(name));
  throw new Error(
    `the API server accepted a write the webhook should refuse (${name}); ` +
      `the webhook logged ${seen.length === 0 ? 'nothing about it' : seen.join('\n')}`,
  );
}

/** A refusal by the webhook (403, naming the webhook) with a message matching every pattern. */
async function refusedByWebhook(write: Promise<unknown>, ...patterns: RegExp[]): Promise<string> {
  const { code, message } = await refusal(write);
  expect(message).toMatch(/admission webhook "[a-z]+\.crowbar\.dev" denied the request/);
  expect(code).toBe(403);
  for (const p of patterns) expect(message).toMatch(p);
  return message;
}

/** `write` as a dry run (dryRun=All): judged by the webhook, stored nowhere. */
type DryWrite = () => Promise<unknown>;

function dryCreate(kind: 'Network' | 'Node', body: { metadata: { name: string }; spec: object }) {
  return (): Promise<unknown> =>
    client.api.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURALS[kind],
      body: { apiVersion: `${GROUP}/${VERSION}`, kind, ...body },
      fieldManager: FM,
      dryRun: 'All',
    });
}

function dryPatch(kind: 'Network' | 'Node', name: string, patch: object) {
  return (): Promise<unknown> =>
    client.api.patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURALS[kind],
        name,
        body: patch,
        fieldManager: FM,
        dryRun: 'All',
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
}

/**
 * Waits until the webhook refuses a dry run of a write: the API server calls the webhook for
 * the kind, and the webhook's cache holds the objects written just before (an allow from a
 * cache that lags is not re-checked, by design; see webhooks/state.ts).
 */
async function untilDryRunRefused(what: string, write: DryWrite): Promise<void> {
  await eventually(
    what,
    async () => {
      try {
        await write();
        return false;
      } catch (e) {
        if (apiCode(e) === 403) return true;
        throw e;
      }
    },
    30_000,
    100,
  );
}

/** A general network in its own group (other files' networks never overlap it). */
function networkBody(name: string, spec: Partial<NetworkSpec>) {
  return { metadata: { name }, spec: { category: 'general' as const, ...spec } };
}

async function createNetwork(name: string, spec: Partial<NetworkSpec>) {
  const res = await client.create('Network', networkBody(name, spec), FM);
  cleanup.push({ kind: 'Network', name });
  return res;
}

async function createRole(
  name: string,
  spec: { requires?: string[]; conflicts?: string[]; provides?: string[]; flags?: 'abstract'[] },
) {
  const res = await client.create(
    'Role',
    { metadata: { name }, spec: { jig: 'noop', ...spec } },
    FM,
  );
  cleanup.push({ kind: 'Role', name });
  return res;
}

async function createNode(name: string, spec: NodeSpec = {}) {
  await client.create('Node', { metadata: { name }, spec }, FM);
  cleanup.push({ kind: 'Node', name });
}

function bindRaw(role: string, node: string, deployment = 'system') {
  return client.create(
    'NodeRole',
    { metadata: { name: `${role}.${node}` }, spec: { role, node, deployment } },
    FM,
  );
}

async function bind(role: string, node: string, status?: NodeRoleStatus, deployment = 'system') {
  const nr = await bindRaw(role, node, deployment);
  cleanup.push({ kind: 'NodeRole', name: `${role}.${node}` });
  if (status) await client.mergePatchStatus('NodeRole', `${role}.${node}`, { status }, FM);
  return nr;
}

/** A role requiring itself: refused exactly when the roles webhook is in the API server's path. */
async function probeFires(name: string): Promise<boolean> {
  try {
    await client.create(
      'Role',
      { metadata: { name }, spec: { jig: 'noop', requires: [name] } },
      FM,
    );
  } catch (e) {
    if (apiCode(e) === 403 && /dependency cycle/.test(apiMessage(e))) return true;
    throw e;
  }
  await client.delete('Role', name);
  return false;
}

/**
 * A binding of a role that does not exist: refused exactly when the noderoles webhook is in the
 * API server's path. Each webhook of the configuration is probed on its own, so that no test
 * starts before the API server calls the webhook it relies on.
 */
async function probeNodeRolesFire(role: string): Promise<boolean> {
  const name = `${role}.${fqdn('probe')}`;
  try {
    await client.create(
      'NodeRole',
      { metadata: { name }, spec: { role, node: fqdn('probe'), deployment: 'system' } },
      FM,
    );
  } catch (e) {
    if (apiCode(e) === 403 && /does not exist; create the Role first/.test(apiMessage(e))) {
      return true;
    }
    throw e;
  }
  await client.delete('NodeRole', name);
  return false;
}

beforeAll(async () => {
  const cpDir = inject('cpDir');
  const pkiDir = join(cpDir, 'pki');
  webhookLog = join(cpDir, `webhook-${id}.log`);
  ca = readFileSync(join(pkiDir, 'ca.crt'), 'utf8');
  const leaf = issueLeaf(pkiDir, `webhook-${id}`, '/CN=localhost', true);
  port = await freePort();
  proc = startProcess(
    process.execPath,
    [
      join(ROOT, 'webhooks', 'main.ts'),
      `--kubeconfig=${inject('kubeconfig')}`,
      `--listen=127.0.0.1:${port}`,
      `--tls-cert=${leaf.crt}`,
      `--tls-key=${leaf.key}`,
    ],
    webhookLog,
    { env: { ...process.env, LOG_LEVEL: 'debug' } },
  );
  await waitFor(
    'webhook /readyz over TLS',
    async () => (await https('/readyz')).status === 200,
    30_000,
  );
  if (!(await client.get('Deployment', 'system'))) {
    await client.create(
      'Deployment',
      { metadata: { name: 'system' }, spec: { state: 'committed' } },
      FM,
    );
    createdSystem = true;
  }
  // Every Node must name a BootEnv that exists; the operator makes the defaults, as here.
  for (const name of await ensureDefaultBootEnvs(client, FM))
    cleanup.push({ kind: 'BootEnv', name });
  await admission.createValidatingWebhookConfiguration({
    body: validatingWebhookConfiguration({
      name: CONFIG_NAME,
      clientConfig: { url: `https://127.0.0.1:${port}/validate`, caPem: ca },
    }),
  });
  registered = true;
  // The API server learns of the configuration through an informer: probe until it fires.
  let n = 0;
  await eventually('the webhook to fire', () => probeFires(r(`probe${n++}`)), 30_000, 200);
  await eventually(
    'the noderoles webhook to fire',
    () => probeNodeRolesFire(r(`probe${n++}`)),
    30_000,
    200,
  );
});

afterAll(async () => {
  if (registered) {
    try {
      await admission.deleteValidatingWebhookConfiguration({ name: CONFIG_NAME });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    // Wait until the API server has dropped it, so no write is sent to a stopped process.
    let n = 0;
    await eventually(
      'the webhook to stop firing',
      async () => !(await probeFires(r(`off${n++}`))),
      30_000,
      200,
    );
  }
  await proc?.stop();
  const order = [
    'NetworkAllocation',
    'NodeRole',
    'Role',
    'Deployment',
    'Node',
    'Network',
    'BootEnv',
  ] as const;
  for (const kind of order) {
    for (const o of cleanup.filter((c) => c.kind === kind).reverse()) {
      await client.delete(o.kind, o.name);
    }
  }
  if (createdSystem) await client.delete('Deployment', 'system');
});

describe('admission webhook', () => {
  it('refuses a role require that closes a cycle, naming the path (§1.3)', async () => {
    // Late binding: requires may name roles that do not exist yet.
    await createRole(r('cy-a'), { requires: [r('cy-b')] });
    await createRole(r('cy-b'), { requires: [r('cy-c')] });
    await refusedByWebhook(
      createRole(r('cy-c'), { requires: [r('cy-a')] }),
      new RegExp(`${r('cy-c')} -> ${r('cy-a')} -> ${r('cy-b')} -> ${r('cy-c')}`),
      /Remove the require/,
    );
    // An update closing the cycle is refused too; one that does not is allowed.
    await createRole(r('cy-c'), {});
    await refusedByWebhook(
      client.mergePatch('Role', r('cy-c'), { spec: { requires: [r('cy-a')] } }, FM),
      /would close a dependency cycle/,
    );
    await client.mergePatch('Role', r('cy-c'), { spec: { description: 'leaf' } }, FM);
  });

  it('refuses binding an abstract, an unresolved or a conflicting role (§1.2)', async () => {
    const node = fqdn('bind');
    await createNode(node);
    await createRole(r('database'), { flags: ['abstract'] });
    await createRole(r('postgres'), { provides: [r('database')] });
    await createRole(r('unres'), { requires: [r('ghost')] });
    await createRole(r('ntp-a'), { conflicts: [r('ntp-b')] });
    await createRole(r('ntp-b'), {});

    await refusedByWebhook(
      bindRaw(r('database'), node),
      /is abstract and cannot be bound/,
      new RegExp(`bind one that provides it \\(${r('postgres')}\\)`),
    );
    await refusedByWebhook(
      bindRaw(r('unres'), node),
      new RegExp(`requires ${r('ghost')}, which do not exist yet; create them`),
    );
    await bind(r('ntp-b'), node);
    await refusedByWebhook(
      bindRaw(r('ntp-a'), node),
      new RegExp(`role ${r('ntp-a')} conflicts with role ${r('ntp-b')}`),
      /remove it or pick another node/,
    );
    await refusedByWebhook(bindRaw(r('ntp-b'), fqdn('missing')), /does not exist; create the Node/);
    // Late binding: once the required role exists, the binding is allowed.
    await createRole(r('ghost'), {});
    await bind(r('unres'), node);
  });

  it('allows editing spec.data only while the noderole is proposed (§1.4)', async () => {
    const node = fqdn('data');
    await createNode(node);
    await createRole(r('cfg'), {});
    await createRole(r('cfg2'), {});
    await bind(r('cfg'), node, { state: 'active', runCount: 1 });
    await bind(r('cfg2'), node, { state: 'proposed', runCount: 0 });
    await refusedByWebhook(
      client.mergePatch('NodeRole', `${r('cfg')}.${node}`, { spec: { data: { port: 1 } } }, FM),
      /spec\.data can change only while it is proposed; set spec\.proposed: true on it/,
    );
    // Other changes to an active noderole pass.
    await client.mergePatch(
      'NodeRole',
      `${r('cfg')}.${node}`,
      { metadata: { labels: { touched: 'yes' } }, spec: { available: false } },
      FM,
    );
    const edited = await client.mergePatch(
      'NodeRole',
      `${r('cfg2')}.${node}`,
      { spec: { data: { port: 2 } } },
      FM,
    );
    expect(edited.spec.data).toEqual({ port: 2 });
  });

  it('refuses deleting a noderole that live children on another node depend on (§1.4)', async () => {
    const n1 = fqdn('del1');
    const n2 = fqdn('del2');
    await createNode(n1);
    await createNode(n2);
    await createRole(r('srv'), {});
    await createRole(r('cli'), { requires: [r('srv')] });
    const parent = `${r('srv')}.${n1}`;
    const child = `${r('cli')}.${n2}`;
    await bind(r('srv'), n1, { state: 'active', runCount: 1, cohort: 0 });
    await bind(r('cli'), n2, { state: 'active', runCount: 1, cohort: 1, parents: [parent] });
    await refusedByWebhook(
      client.delete('NodeRole', parent),
      new RegExp(`${child.replaceAll('.', '\\.')} \\(active, 1 run\\(s\\)\\)`),
      /delete those children first/,
    );
    await client.mergePatchStatus(
      'NodeRole',
      child,
      { status: { state: 'proposed', runCount: 0 } },
      FM,
    );
    expect(await client.delete('NodeRole', parent)).toBe(true);
  });

  it('refuses free-form data nested too deep or too large, and the last admin node going away', async () => {
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 3000; i++) deep = { d: deep };
    await refusedByWebhook(
      client.create(
        'Role',
        { metadata: { name: r('deep') }, spec: { jig: 'noop', template: deep } },
        FM,
      ),
      /spec\.template is nested more than 32 levels deep; flatten it/,
    );
    // The rule is cluster-wide: with another admin node around, deleting ours is allowed.
    const admin = fqdn('admin');
    await createNode(admin, { admin: true });
    const others = (await client.list('Node')).filter(
      (n) => n.spec.admin === true && n.metadata.name !== admin,
    );
    if (others.length === 0)
      await refusedByWebhook(
        client.delete('Node', admin),
        /is the last admin node and cannot be deleted/,
      );
    else expect(await client.delete('Node', admin)).toBe(true);
  });

  it('refuses deleting a role that noderoles still bind', async () => {
    const node = fqdn('roledel');
    await createNode(node);
    await createRole(r('bound'), {});
    await bind(r('bound'), node);
    await refusedByWebhook(
      client.delete('Role', r('bound')),
      new RegExp(`role ${r('bound')} is still bound by 1 noderole\\(s\\)`),
      /delete those noderoles first/,
    );
  });

  it('refuses proposing or deleting the system deployment (§1.5)', async () => {
    // CEL refuses the proposal before validating webhooks run; the webhook repeats the rule.
    const proposed = await refusal(
      client.mergePatch('Deployment', 'system', { spec: { state: 'proposed' } }, FM),
    );
    expect([403, 422]).toContain(proposed.code);
    expect(proposed.message).toMatch(/system deployment cannot be proposed/);
    await refusedByWebhook(
      client.delete('Deployment', 'system'),
      /the system deployment cannot be deleted/,
    );
  });

  it('refuses deleting a deployment that still has noderoles, and allows it once empty', async () => {
    const node = fqdn('dep');
    const dep = r('dep');
    await createNode(node);
    await createRole(r('in-dep'), {});
    await client.create('Deployment', { metadata: { name: dep }, spec: { parent: 'system' } }, FM);
    cleanup.push({ kind: 'Deployment', name: dep });
    await bind(r('in-dep'), node, undefined, dep);
    await refusedByWebhook(
      client.delete('Deployment', dep),
      new RegExp(`deployment ${dep} cannot be deleted: it still has 1 noderole\\(s\\)`),
      new RegExp(`${r('in-dep')}\\.${node.replaceAll('.', '\\.')}`),
    );
    expect(await client.delete('NodeRole', `${r('in-dep')}.${node}`)).toBe(true);
    expect(await client.delete('Deployment', dep)).toBe(true);
  });

  it('refuses a subnet overlapping another network of its group, not of another group', async () => {
    const group = r('grp');
    await createNetwork(r('ov-a'), { group, subnet: '10.77.0.0/16' });
    const overlapping = networkBody(r('ov-b'), { group, subnet: '10.77.1.0/24' });
    await untilDryRunRefused('the webhook to see ' + r('ov-a'), dryCreate('Network', overlapping));
    await refusedByWebhook(
      client.create('Network', overlapping, FM),
      new RegExp(
        `invalid network ${r('ov-b')}: spec\\.subnet \\(10\\.77\\.1\\.0/24\\) overlaps network ${r('ov-a')}'s subnet 10\\.77\\.0\\.0/16 in group ${group}`,
      ),
      /choose a subnet no other network of the group uses, or set spec\.group/,
    );
    // The same subnet in another group is fine.
    const other = await createNetwork(r('ov-c'), { group: r('grp2'), subnet: '10.77.0.0/16' });
    expect(other.spec.subnet).toBe('10.77.0.0/16');
  });

  it('refuses a subnet or range change that strands allocated addresses', async () => {
    const name = r('alloc');
    await createNetwork(name, {
      group: r('grp3'),
      subnet: '10.78.0.0/24',
      ranges: [{ name: 'host', first: '10.78.0.10', last: '10.78.0.99' }],
    });
    const allocation = allocationName(name, '10.78.0.11');
    await client.create(
      'NetworkAllocation',
      {
        metadata: { name: allocation },
        spec: {
          network: name,
          node: fqdn('holder'),
          address: '10.78.0.11/24',
          family: 'ipv4',
          range: 'host',
        },
      },
      FM,
    );
    cleanup.push({ kind: 'NetworkAllocation', name: allocation });
    const move = {
      spec: {
        subnet: '10.79.0.0/24',
        ranges: [{ name: 'host', first: '10.79.0.10', last: '10.79.0.99' }],
      },
    };
    await untilDryRunRefused('the webhook to see ' + allocation, dryPatch('Network', name, move));
    await refusedByWebhook(
      client.mergePatch('Network', name, move, FM),
      new RegExp(
        `spec\\.subnet cannot change from 10\\.78\\.0\\.0/24 to 10\\.79\\.0\\.0/24 while 1 IPv4 addresses are allocated on network ${name} \\(10\\.78\\.0\\.11 \\(${fqdn('holder').replaceAll('.', '\\.')}\\)\\)`,
      ),
      new RegExp(`unbind network-${name} from those nodes first, or create a new network`),
    );
    await refusedByWebhook(
      client.mergePatch(
        'Network',
        name,
        { spec: { ranges: [{ name: 'host', first: '10.78.0.50', last: '10.78.0.99' }] } },
        FM,
      ),
      /spec\.ranges: range host no longer contains 1 allocated addresses/,
    );
    // Growing the range around the allocation is allowed.
    const grown = await client.mergePatch(
      'Network',
      name,
      { spec: { ranges: [{ name: 'host', first: '10.78.0.2', last: '10.78.0.200' }] } },
      FM,
    );
    expect(grown.spec.ranges?.[0]?.last).toBe('10.78.0.200');
  });

  it('refuses a node address hint outside the range it names', async () => {
    const network = r('hint');
    const key = `${network}-v4addr`;
    await createNetwork(network, {
      group: r('grp4'),
      subnet: '10.80.0.0/24',
      ranges: [{ name: 'host', first: '10.80.0.10', last: '10.80.0.99' }],
    });
    const outside = {
      metadata: { name: fqdn('hinted') },
      spec: { hints: { [key]: '10.80.0.200' } },
    };
    await untilDryRunRefused('the webhook to see ' + network, dryCreate('Node', outside));
    await refusedByWebhook(
      client.create('Node', outside, FM),
      new RegExp(
        `invalid address hints on node ${fqdn('hinted').replaceAll('.', '\\.')}: spec\\.hints\\["${key}"\\] \\(10\\.80\\.0\\.200\\) is outside network ${network}'s range host \\(10\\.80\\.0\\.10-10\\.80\\.0\\.99\\)`,
      ),
      /give an address inside it or remove the hint/,
    );
    await createNode(fqdn('hinted'), { hints: { [key]: '10.80.0.50' } });
    await refusedByWebhook(
      client.mergePatch('Node', fqdn('hinted'), { spec: { hints: { [key]: '10.80.0.201' } } }, FM),
      /is outside network .*'s range host/,
    );
  });

  it('refuses a node whose spec.bootEnv names no BootEnv, saying which exist', async () => {
    const node = fqdn('booting');
    const env = `${r('wh')}-install`;
    const missing = `${r('nope')}-install`;
    const esc = (x: string) => x.replaceAll('.', '\\.');
    await refusedByWebhook(
      client.create('Node', { metadata: { name: node }, spec: { bootEnv: env } }, FM),
      new RegExp(
        `spec\\.bootEnv of node ${esc(node)} names BootEnv ${esc(env)}, which does not exist; create BootEnv ${esc(env)} first, or name one that exists: .*local.*sledgehammer`,
      ),
    );
    // Created a moment before the Node: the webhook's refusal from its cache is checked again
    // against fresh lists, so the Node is allowed.
    await client.create('BootEnv', { metadata: { name: env }, spec: { local: true } }, FM);
    cleanup.push({ kind: 'BootEnv', name: env });
    await createNode(node, { bootEnv: env });
    await refusedByWebhook(
      client.mergePatch('Node', node, { spec: { bootEnv: missing } }, FM),
      new RegExp(`names BootEnv ${esc(missing)}, which does not exist`),
    );
    expect((await client.get('Node', node))?.spec.bootEnv).toBe(env);
    // Moving to an existing one, or leaving bootEnv alone, is allowed.
    await client.mergePatch('Node', node, { spec: { bootEnv: 'local' } }, FM);
    await client.mergePatch('Node', node, { spec: { available: false } }, FM);
    expect((await client.get('Node', node))?.spec).toMatchObject({
      bootEnv: 'local',
      available: false,
    });
  });

  it('counts what it judged in /metrics', async () => {
    const text = (await https('/metrics')).body;
    expect(text).toMatch(
      /crowbar_admission_requests_total\{kind="NodeRole",operation="CREATE",result="denied"\} [1-9]/,
    );
    expect(text).toMatch(
      /crowbar_admission_requests_total\{kind="Role",operation="CREATE",result="allowed"\} [1-9]/,
    );
  });
});
