/**
 * The noderole life cycle of the model (CROWBAR-MODEL §1.4, §2.2, §2.5, §3.6, §4.1, §4.2, §10.3)
 * against the real API server, with the operator as a real process: propose and commit, re-runs
 * on edits, walls replaced, run input, deletion, destructive roles and conditions. Runs are
 * counted (runCount, run numbers and the operator's run metrics) wherever runs matter: a run that
 * should not happen fails the test.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Watch } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { NodeRole } from '../../generated/crowbar.ts';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { binDir } from '../harness/bins.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { Fleet } from '../harness/fleet.ts';
import { startOperator, type OperatorProc } from '../harness/operator.ts';

const kubeconfig = inject('kubeconfig');
const logDir = inject('cpDir');
const client = testClient();
const lease = `lifecycle-${uid()}`;
const FM = 'crowbar-test';
let op: OperatorProc | undefined;

async function start(): Promise<OperatorProc> {
  const p = await startOperator({
    kubeconfig,
    logDir,
    identity: `lifecycle-${uid()}`,
    args: [`--lease-name=${lease}`, '--max-concurrent-runs=10'],
  });
  await eventually('operator ready', async () => (await p.http('/readyz')).status === 200);
  return p;
}

beforeAll(async () => {
  op = await start();
});

afterAll(async () => {
  await op?.stop();
});

/** Sum of a labelled counter over the label sets that match `labels`. */
async function counter(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = (await op?.http('/metrics'))?.body ?? '';
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).some(([k, v]) => !line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const runCounts = async (f: Fleet): Promise<Record<string, number>> =>
  Object.fromEntries(
    (await f.noderoles()).map((nr) => [nr.metadata.name ?? '', nr.status?.runCount ?? 0]),
  );

/** base (implicit) <- mid (implicit) <- top, bound on each node; committed; all active. */
async function chain(
  f: Fleet,
  nodes: string[],
  opts: { midTemplate?: Record<string, unknown>; midData?: Record<string, unknown> } = {},
): Promise<string> {
  await f.createRole('base', { flags: ['implicit'], test: { delayMs: 20 } });
  await f.createRole('mid', {
    flags: ['implicit'],
    requires: ['base'],
    test: { delayMs: 20 },
    ...(opts.midTemplate ? { template: opts.midTemplate } : {}),
  });
  await f.createRole('top', { requires: ['mid'], test: { delayMs: 20 } });
  const dep = await f.createDeployment('d');
  for (const n of nodes) await f.createNode(n);
  for (const n of nodes) {
    if (opts.midData) await f.bind('mid', n, dep, opts.midData);
    await f.bind('top', n, dep);
  }
  await eventually('bound', async () => (await f.noderoles()).length === 3 * nodes.length);
  await f.commit(dep);
  await f.waitAll('active', 3 * nodes.length);
  return dep;
}

/** Waits until every noderole of the fleet is active with exactly the given run counts. */
async function settledAt(f: Fleet, want: Record<string, number>): Promise<void> {
  await eventually(
    `run counts ${JSON.stringify(want)}`,
    async () => {
      const all = await f.noderoles();
      return (
        all.length === Object.keys(want).length &&
        all.every(
          (nr) =>
            nr.status?.state === 'active' && nr.status.runCount === want[nr.metadata.name ?? ''],
        )
      );
    },
    60_000,
    100,
  );
}

describe('propose and commit (§2.2, §2.5)', () => {
  it('a noderole: its edited data is committed, it runs again, its descendants follow', async () => {
    const f = new Fleet(client, uid());
    await chain(f, ['n1']);
    const [base, mid, top] = [f.nr('base', 'n1'), f.nr('mid', 'n1'), f.nr('top', 'n1')];
    const started = await counter('crowbar_runs_started_total');

    await client.mergePatch('NodeRole', mid, { spec: { proposed: true, data: { x: 2 } } }, FM);
    const held = await f.waitState(mid, 'proposed');
    expect(held.status?.message).toMatch(/set spec\.proposed to false to commit/);
    // §2.2 propose!: children stay as they are until it is committed again.
    expect((await client.get('NodeRole', top))?.status?.state).toBe('active');

    await client.mergePatch('NodeRole', mid, { spec: { proposed: false } }, FM);
    await settledAt(f, { [base]: 1, [mid]: 2, [top]: 2 });
    const after = await client.get('NodeRole', mid);
    expect(after?.status?.committedData).toEqual({ x: 2 });
    expect(after?.status?.run?.input).toMatchObject({ x: 2 });
    expect(await counter('crowbar_runs_started_total')).toBe(started + 2);

    // Committed data is replaced: a key removed from spec.data leaves committedData too.
    await client.mergePatch(
      'NodeRole',
      mid,
      { spec: { proposed: true, data: { x: null, y: 1 } } },
      FM,
    );
    await f.waitState(mid, 'proposed');
    await client.mergePatch('NodeRole', mid, { spec: { proposed: false } }, FM);
    await settledAt(f, { [base]: 1, [mid]: 3, [top]: 3 });
    expect((await client.get('NodeRole', mid))?.status?.committedData).toEqual({ y: 1 });
  });

  it("a node's noderoles and a deployment's noderoles, each run again once", async () => {
    const f = new Fleet(client, uid());
    const dep = await chain(f, ['n1', 'n2']);
    const names = Object.keys(await runCounts(f));
    const n1 = names.filter((n) => n.endsWith(f.node('n1')));

    await client.mergePatch('Node', f.node('n1'), { spec: { proposed: true } }, FM);
    await eventually('node n1 proposed', async () => {
      const s = await f.states();
      return n1.every((n) => s.get(n) === 'proposed') && [...s.values()].includes('active');
    });
    const nr = await client.get('NodeRole', n1[0] ?? '');
    expect(nr?.status?.message).toMatch(/node .* is proposed; set its spec\.proposed to false/);
    await client.mergePatch('Node', f.node('n1'), { spec: { proposed: false } }, FM);
    await settledAt(f, Object.fromEntries(names.map((n) => [n, n1.includes(n) ? 2 : 1])));

    await client.mergePatch('Deployment', dep, { spec: { state: 'proposed' } }, FM);
    await f.waitAll('proposed', names.length);
    await f.commit(dep);
    await settledAt(f, Object.fromEntries(names.map((n) => [n, n1.includes(n) ? 3 : 2])));
  });
});

describe('re-run on change (§3.6 poke)', () => {
  it('re-runs exactly the noderoles whose run input an edit changes, and their descendants', async () => {
    const f = new Fleet(client, uid());
    // mid on n2 overrides the template's key with its own data: a template edit of that key does
    // not change its input.
    const dep = await chain(f, ['n1', 'n2'], { midTemplate: { t: 1 } });
    await client.mergePatch(
      'NodeRole',
      f.nr('mid', 'n2'),
      { spec: { proposed: true, data: { t: 'mine' } } },
      FM,
    );
    await f.waitState(f.nr('mid', 'n2'), 'proposed');
    await client.mergePatch('NodeRole', f.nr('mid', 'n2'), { spec: { proposed: false } }, FM);
    const want: Record<string, number> = {
      [f.nr('base', 'n1')]: 1,
      [f.nr('mid', 'n1')]: 1,
      [f.nr('top', 'n1')]: 1,
      [f.nr('base', 'n2')]: 1,
      [f.nr('mid', 'n2')]: 2,
      [f.nr('top', 'n2')]: 2,
    };
    await settledAt(f, want);
    const started = await counter('crowbar_runs_started_total');

    await client.mergePatch('Role', f.role('mid'), { spec: { template: { t: 2 } } }, FM);
    want[f.nr('mid', 'n1')] = 2;
    want[f.nr('top', 'n1')] = 2;
    await settledAt(f, want);
    expect((await client.get('NodeRole', f.nr('mid', 'n1')))?.status?.run?.input).toMatchObject({
      t: 2,
    });
    expect((await client.get('NodeRole', f.nr('mid', 'n1')))?.status?.message).toBe(
      'active after run 2',
    );

    // The deployment's data is in every input: each noderole runs once more, in order.
    await client.mergePatch('Deployment', dep, { spec: { data: { site: 'x' } } }, FM);
    for (const k of Object.keys(want)) want[k] = (want[k] ?? 0) + 1;
    await settledAt(f, want);
    expect(await counter('crowbar_runs_started_total')).toBe(started + 2 + 6);
    // An edit that changes no input (the same data again) runs nothing.
    await client.mergePatch('Role', f.role('mid'), { spec: { description: 'edited' } }, FM);
    await client.mergePatch('Deployment', dep, { spec: { data: { site: 'x' } } }, FM);
    await client.mergePatch('Role', f.role('top'), { spec: { template: {} } }, FM);
    // Wait for a later edit to be acted on, then check that nothing else ran meanwhile.
    await client.mergePatch('Role', f.role('top'), { spec: { template: { late: 1 } } }, FM);
    want[f.nr('top', 'n1')] = (want[f.nr('top', 'n1')] ?? 0) + 1;
    want[f.nr('top', 'n2')] = (want[f.nr('top', 'n2')] ?? 0) + 1;
    await settledAt(f, want);
    expect(await counter('crowbar_runs_started_total')).toBe(started + 2 + 6 + 2);
  });
});

describe('walls and run input (§4.1, §4.2)', () => {
  it('replaces the wall: keys a run stops returning disappear', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('w', { test: { wall: { keep: 1, drop: { deep: 2 } } } });
    await f.createNode('n1');
    const dep = await f.createDeployment('d', 'committed');
    const nr = await f.bind('w', 'n1', dep);
    const first = await f.waitState(nr, 'active');
    expect(first.status?.wall).toMatchObject({ keep: 1, drop: { deep: 2 } });
    // A merge patch: null removes the key from the role's test wall.
    await client.mergePatch(
      'Role',
      f.role('w'),
      { spec: { test: { wall: { keep: 1, drop: null } } } },
      FM,
    );
    await client.mergePatch('NodeRole', nr, { spec: { proposed: true } }, FM);
    await f.waitState(nr, 'proposed');
    await client.mergePatch('NodeRole', nr, { spec: { proposed: false } }, FM);
    await settledAt(f, { [nr]: 2 });
    expect((await client.get('NodeRole', nr))?.status?.wall).toEqual({ keep: 1, test: { run: 2 } });
  });

  it("hands a run its same-node ancestors' walls, and another node's data only as wanted", async () => {
    const f = new Fleet(client, uid());
    await f.createRole('srv', { test: { wall: { srv: { addr: '10.1.1.1' }, secret: 's' } } });
    await f.createRole('loc', { flags: ['implicit'], test: { wall: { local: 1, v: 'loc' } } });
    await f.createRole('cli', {
      requires: ['srv', 'loc'],
      wants: ['srv/addr'],
      template: { v: 'template' },
    });
    await f.createNode('n1');
    await f.createNode('n2');
    const dep = await f.createDeployment('d');
    await f.bind('srv', 'n1', dep);
    await eventually(
      'srv bound',
      async () => (await client.get('NodeRole', f.nr('srv', 'n1')))?.status?.state === 'proposed',
    );
    await f.bind('cli', 'n2', dep);
    await eventually('bound', async () => (await f.noderoles()).length === 3);
    await f.commit(dep);
    await f.waitAll('active', 3);
    const cli = await client.get('NodeRole', f.nr('cli', 'n2'));
    expect(cli?.status?.parents?.sort()).toEqual([f.nr('loc', 'n2'), f.nr('srv', 'n1')].sort());
    const input = cli?.status?.run?.input ?? {};
    expect(input).toMatchObject({ local: 1, srv: { addr: '10.1.1.1' }, v: 'template' });
    expect(input).not.toHaveProperty('secret');
    expect(cli?.status?.run?.inputDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('destructive roles run once (§1.2)', () => {
  it('are not cancelled by node death, and a later transition or a retry skips the jig', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('wipe', { flags: ['destructive'], test: { delayMs: 1500 } });
    await f.createRole('bad', { flags: ['destructive'], test: { fail: true } });
    await f.createNode('n1');
    await f.createNode('n2');
    const dep = await f.createDeployment('d', 'committed');
    const wipe = await f.bind('wipe', 'n1', dep);
    await f.waitState(wipe, 'transition');
    // The role reboots its node, say: the node looks dead while the run goes on.
    await f.setAlive('n1', false);
    const ran = await eventually('the run finished', async () => {
      const nr = await client.get('NodeRole', wipe);
      return nr?.status?.run?.result === 'succeeded' ? nr : undefined;
    });
    expect(ran.status?.run?.number).toBe(1);
    await f.setAlive('n1', true);
    const done = await f.waitState(wipe, 'active');
    expect(done.status?.run).toMatchObject({ number: 1, result: 'skipped' });

    const bad = await f.bind('bad', 'n2', dep);
    const failed = await f.waitState(bad, 'error');
    expect(failed.status?.run?.result).toBe('failed');
    await client.mergePatch('NodeRole', bad, { spec: { retry: 1 } }, FM);
    const retried = await f.waitState(bad, 'active');
    expect(retried.status?.run?.result).toBe('skipped');
    expect(retried.status?.message).toMatch(/destructive role already ran/);
  });

  it('goes to error for a person when its run is interrupted by the operator stopping', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('install', { flags: ['destructive'], test: { delayMs: 30_000 } });
    await f.createNode('n1');
    const dep = await f.createDeployment('d', 'committed');
    const nr = await f.bind('install', 'n1', dep);
    await f.waitState(nr, 'transition');
    await op?.stop(); // SIGTERM: the inline run is cancelled
    op = await start();
    const e = await f.waitState(nr, 'error');
    expect(e.status?.message).toMatch(/destructive run cancelled: .*check the node/);
    await client.mergePatch('NodeRole', nr, { spec: { retry: 1 } }, FM);
    const after = await f.waitState(nr, 'active');
    expect(after.status?.run?.result).toBe('skipped');
  });
});

describe('deletion (§1.4, §10.3)', () => {
  it('deletes the children of a deleted noderole first, in cohort-descending order', async () => {
    const f = new Fleet(client, uid());
    await chain(f, ['n1']);
    const [base, mid, top] = [f.nr('base', 'n1'), f.nr('mid', 'n1'), f.nr('top', 'n1')];
    const order: string[] = [];
    const kc = loadKubeConfig(kubeconfig);
    const req = await new Watch(kc).watch(
      '/apis/crowbar.dev/v1alpha1/noderoles',
      {},
      (type: string, obj: NodeRole) => {
        if (type === 'DELETED' && obj.metadata.name?.includes(f.id)) order.push(obj.metadata.name);
      },
      () => undefined,
    );
    try {
      await client.delete('NodeRole', base);
      await eventually('all three gone', () => order.length === 3, 30_000);
      expect(order).toEqual([top, mid, base]);
    } finally {
      req.abort();
    }
    expect(await f.noderoles()).toEqual([]);
  });

  it('deleting a Node removes its noderoles and releases its addresses', async () => {
    const f = new Fleet(client, uid());
    const net = `net-${f.id}`;
    await client.create(
      'Network',
      {
        metadata: { name: net },
        spec: {
          category: 'general',
          subnet: '10.77.0.0/24',
          ranges: [{ name: 'host', first: '10.77.0.10', last: '10.77.0.20' }],
        },
      },
      FM,
    );
    try {
      await client.create(
        'Role',
        { metadata: { name: f.role('app') }, spec: { jig: 'test', requires: [`network-${net}`] } },
        FM,
      );
      // The network controller creates the role network-<net>; bound on the node, it holds the
      // node's address (§7.4).
      await chain(f, ['n1']);
      const dep = await f.createDeployment('d2', 'committed');
      await f.bind('app', 'n1', dep);
      await eventually(
        'app active',
        async () => (await client.get('NodeRole', f.nr('app', 'n1')))?.status?.state === 'active',
      ).catch(async (e: unknown) => {
        const all = await f.noderoles();
        const states = all.map(
          (nr) =>
            `${nr.metadata.name ?? ''} ${nr.status?.state ?? '-'} ${nr.status?.message ?? ''}`,
        );
        throw new Error(`${(e as Error).message}: ${states.join('; ')}`);
      });
      const held = await eventually('an address held', async () => {
        const a = (await client.list('NetworkAllocation')).filter(
          (x) => x.spec.node === f.node('n1'),
        );
        return a.length > 0 ? a : undefined;
      });
      expect(held[0]?.spec.network).toBe(net);
      const name = held[0]?.metadata.name ?? '';
      // Who holds it is in the object itself (ADR 0025: its create is the allocation's one write).
      const a = await client.get('NetworkAllocation', name);
      expect(a?.spec.node).toBe(f.node('n1'));
      expect(a?.metadata.ownerReferences?.[0]?.name).toMatch(/^network-/);
      const node = await client.get('Node', f.node('n1'));
      expect(node?.metadata.finalizers).toContain('crowbar.dev/node-cleanup');

      await client.delete('Node', f.node('n1'));
      await eventually(
        'node, noderoles and addresses gone',
        async () =>
          (await client.get('Node', f.node('n1'))) === undefined &&
          (await f.noderoles()).length === 0 &&
          (await client.list('NetworkAllocation')).every((a) => a.spec.node !== f.node('n1')),
        60_000,
      );
    } finally {
      await client.delete('Network', net).catch(() => undefined);
    }
  });
});

describe('one bad object never stalls the rest', () => {
  it('a noderole whose role is gone goes to error instead of being retried every pass', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('gone', {});
    await f.createRole('fine', {});
    await f.createNode('n1');
    await f.createNode('n2');
    const dep = await f.createDeployment('d');
    const gone = await f.bind('gone', 'n1', dep);
    const fine = await f.bind('fine', 'n2', dep);
    await eventually('bound', async () => (await f.states()).get(gone) === 'proposed');
    await client.delete('Role', f.role('gone'));
    await eventually(
      'role gone from the operator',
      async () => !(await client.get('Role', f.role('gone'))),
    );
    await f.commit(dep);
    const e = await f.waitState(gone, 'error');
    expect(e.status?.message).toMatch(/^role gone-.* does not exist; create it, then retry/);
    await f.waitState(fine, 'active');
  });
});

describe('conditions as Kubernetes expects', () => {
  it('Ready on NodeRole and Node (kubectl wait works), observedGeneration, stable transition times', async () => {
    const f = new Fleet(client, uid());
    await chain(f, ['n1']);
    const top = f.nr('top', 'n1');
    const kubectl = join(binDir(), 'kubectl');
    const run = promisify(execFile);
    const env = { ...process.env, KUBECONFIG: kubeconfig };
    await run(
      kubectl,
      ['wait', '--for=condition=Ready', `noderoles.crowbar.dev/${top}`, '--timeout=30s'],
      { env },
    );
    await run(
      kubectl,
      ['wait', '--for=condition=Ready', `nodes.crowbar.dev/${f.node('n1')}`, '--timeout=30s'],
      { env },
    );
    const nr = await client.get('NodeRole', top);
    expect(nr?.status?.observedGeneration).toBe(nr?.metadata.generation);
    const bound = nr?.status?.conditions?.find((c) => c.type === 'Bound');
    const ready = nr?.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'True', observedGeneration: nr?.metadata.generation });
    const node = await client.get('Node', f.node('n1'));
    expect(node?.status?.observedGeneration).toBe(node?.metadata.generation);

    // A re-run writes Active/Ready several times; Bound, unchanged, keeps its time.
    await client.mergePatch('NodeRole', top, { spec: { proposed: true } }, FM);
    await f.waitState(top, 'proposed');
    await client.mergePatch('NodeRole', top, { spec: { proposed: false } }, FM);
    await settledAt(f, { [f.nr('base', 'n1')]: 1, [f.nr('mid', 'n1')]: 1, [top]: 2 });
    const later = await client.get('NodeRole', top);
    expect(later?.status?.conditions?.find((c) => c.type === 'Bound')?.lastTransitionTime).toBe(
      bound?.lastTransitionTime,
    );
    expect(later?.status?.observedGeneration).toBe(later?.metadata.generation);
  });
});
