/**
 * A new user's first hour (issue 15, "Must show"): an EMPTY cluster (its own etcd and
 * kube-apiserver, nothing but the CRDs, the operator and the role catalog) is bootstrapped by
 * `kubectl crowbar init --wizard`, driven through a pseudo-terminal, to a converged system
 * deployment: the admin network and node exist, the bootstrap roles are bound on the admin node
 * and active, the system deployment and the admin Node are active.
 * The admin node has no machine behind it here, so it reports itself alive through the operator's
 * node API with its own token, as its installer does (operator/api/server.ts).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purposeToken, tokenSecretName } from '../../operator/api/tokens.ts';
import { CrowbarClient, loadKubeConfig } from '../../operator/kube/client.ts';
import { applyManifests, readManifests } from '../../lab/apply.ts';
import { convergence, type Convergence } from '../../lab/converge.ts';
import { startControlPlane, type ControlPlane } from '../harness/control-plane.ts';
import { eventually, uid } from '../harness/context.ts';
import { ROOT, startOperator, type OperatorProc } from '../harness/operator.ts';
import { freePort } from '../harness/process.ts';

const BIN = join(ROOT, 'cli', 'kubectl-crowbar');
const id = uid();
const DOMAIN = `wiz-${id}.example.com`;
const ADMIN = `admin.${DOMAIN}`;
let cp: ControlPlane;
let op: OperatorProc | undefined;
let apiPort = 0;

beforeAll(async () => {
  cp = await startControlPlane({ controllerManager: false });
  apiPort = await freePort();
}, 120_000);

afterAll(async () => {
  await op?.stop();
  await cp.stop();
});

describe('kubectl crowbar init --wizard on an empty cluster', () => {
  it('bootstraps it through a terminal to a converged system deployment', async () => {
    const kc = loadKubeConfig(cp.kubeconfig);
    const client = new CrowbarClient(kc);
    for (const kind of ['Deployment', 'Node', 'Network', 'NodeRole', 'Role'] as const)
      expect(await eventually(`${kind} storage`, async () => client.list(kind))).toEqual([]);

    // What a site has before the wizard: the chart's operator and the catalog of roles.
    op = await startOperator({
      kubeconfig: cp.kubeconfig,
      logDir: cp.dir,
      identity: `wiz-${id}`,
      args: [`--api-addr=127.0.0.1:${String(apiPort)}`, '--leader-elect=false'],
    });
    await eventually('operator ready', async () => (await op?.http('/readyz'))?.status === 200);
    await applyManifests(kc, readManifests([join(ROOT, 'lab', 'examples', '20-roles.yaml')]));
    const bootstrap = (await client.list('Role'))
      .filter((r) => r.spec.flags?.includes('bootstrap'))
      .map((r) => r.metadata.name ?? '');
    expect(bootstrap.length).toBeGreaterThan(0);

    // script(1) gives the CLI a pseudo-terminal; the test answers each prompt as it appears.
    const p = spawn('script', ['-qfec', `${BIN} init --wizard`, '/dev/null'], {
      env: { ...process.env, KUBECONFIG: cp.kubeconfig },
    });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((resolve) => p.on('close', resolve));
    const answer = async (prompt: string, text: string) => {
      await eventually(`prompt ${prompt}`, () => out.includes(prompt));
      out = out.slice(out.indexOf(prompt) + prompt.length);
      p.stdin.write(`${text}\r`);
    };
    await answer('DNS domain', DOMAIN);
    await answer('Admin network name', 'admin');
    await answer('Admin subnet', '10.66.0.0/24');
    await answer('Ranges', '');
    await answer('Router', '');
    await answer('IPv6 prefix', 'auto');
    await answer('Admin node FQDN', ADMIN);
    await answer('Admin node MACs', '52:54:00:66:00:01');
    await answer('Create it?', 'yes');
    expect(await exited).toBe(0);
    expect(out).toContain(`node.crowbar.dev/${ADMIN} applied`);

    // The admin machine's installer reports it alive with the token the operator made for it.
    const core = kc.makeApiClient(CoreV1Api);
    const secret = await eventually('the admin node token', async () =>
      core
        .readNamespacedSecret({ name: tokenSecretName(ADMIN), namespace: 'default' })
        .catch(() => undefined),
    );
    // The node's `alive` token, derived from its secret (which is never handed out itself).
    const token = purposeToken(
      Buffer.from(secret.data?.['token'] ?? '', 'base64').toString('utf8'),
      'alive',
    );
    const res = await fetch(`http://127.0.0.1:${String(apiPort)}/api/v1/nodes/${ADMIN}/alive`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify({ message: 'installed' }),
    });
    expect(res.status).toBe(200);

    let last: Convergence | undefined;
    await eventually(
      'the system deployment converged',
      async () => {
        const [roles, noderoles, nodes, deployments] = await Promise.all([
          client.list('Role'),
          client.list('NodeRole'),
          client.list('Node'),
          client.list('Deployment'),
        ]);
        last = convergence(
          { roles, noderoles, nodes, deployments },
          { deployments: ['system'], adminNode: ADMIN, minNodes: 1 },
        );
        return last.converged;
      },
      90_000,
      250,
    ).catch((e: unknown) => {
      throw new Error(`not converged: ${(last?.pending ?? []).join('; ')}`, { cause: e });
    });

    const nrs = await client.list('NodeRole');
    for (const role of bootstrap) {
      const nr = nrs.find((x) => x.spec.role === role && x.spec.node === ADMIN);
      expect(nr?.spec.deployment).toBe('system');
      expect(nr?.status?.state).toBe('active');
    }
    expect((await client.get('Deployment', 'system'))?.status?.state).toBe('active');
    expect((await client.get('Node', ADMIN))?.status?.state).toBe('active');
    const net = await client.get('Network', 'admin');
    expect(net?.spec).toMatchObject({ category: 'admin', subnet: '10.66.0.0/24' });
  });
});
