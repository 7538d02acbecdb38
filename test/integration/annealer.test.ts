/**
 * The annealer against the real API server, with the operator as a real process: binding,
 * commit, convergence, error and retry, node death and availability, restarts, and replicas.
 */
import { isDeepStrictEqual } from 'node:util';
import { Watch } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { NodeRole } from '../../generated/crowbar.ts';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { Fleet } from '../harness/fleet.ts';
import { metricValue, startOperator, type OperatorProc } from '../harness/operator.ts';

const kubeconfig = inject('kubeconfig');
const logDir = inject('cpDir');
const client = testClient();
const lease = `annealer-${uid()}`;
let op: OperatorProc | undefined;
const extra: OperatorProc[] = [];

async function start(identity: string, args: string[] = []): Promise<OperatorProc> {
  return startOperator({
    kubeconfig,
    logDir,
    identity,
    args: [`--lease-name=${lease}`, '--max-concurrent-runs=10', ...args],
  });
}

beforeAll(async () => {
  op = await start(`annealer-${uid()}`);
  await eventually('operator ready', async () => (await op?.http('/readyz'))?.status === 200);
});

afterEach(async () => {
  for (const p of extra.splice(0)) await p.stop();
});

afterAll(async () => {
  await op?.stop();
});

/** base (implicit) <- mid (implicit, also needs the cluster-wide srv) <- top: three levels. */
async function threeLevelGraph(f: Fleet, delayMs = 30): Promise<void> {
  await f.createRole('srv', { test: { delayMs } });
  await f.createRole('base', { flags: ['implicit'], test: { delayMs } });
  await f.createRole('mid', {
    flags: ['implicit'],
    requires: ['base', 'srv'],
    test: { delayMs, wall: { mid: { ready: true } } },
  });
  await f.createRole('top', { requires: ['mid'], test: { delayMs } });
}

describe('annealer', () => {
  it('binds a 3-level role graph over 5 nodes and converges it to active after commit', async () => {
    const f = new Fleet(client, uid());
    await threeLevelGraph(f);
    const nodes = ['n1', 'n2', 'n3', 'n4', 'n5'];
    for (const n of nodes) await f.createNode(n);
    const dep = await f.createDeployment('d');
    for (const n of nodes) await f.bind('top', n, dep);
    // 5 × (top, mid, base) + one srv reused cluster-wide (§6.1 non-implicit parents).
    const bound = await eventually('all bound and proposed', async () => {
      const all = await f.noderoles();
      return all.length === 16 && all.every((nr) => nr.status?.state === 'proposed')
        ? all
        : undefined;
    });
    const srv = bound.filter((nr) => nr.spec.role === f.role('srv'));
    expect(srv).toHaveLength(1);
    const top1 = bound.find((nr) => nr.metadata.name === f.nr('top', 'n1'));
    expect(top1?.status?.parents).toEqual([f.nr('mid', 'n1')]);
    expect(top1?.status?.cohort).toBe(2);
    // Nothing runs while the deployment is proposed.
    await new Promise((r) => setTimeout(r, 500));
    expect([...(await f.states()).values()].every((s) => s === 'proposed')).toBe(true);

    await f.commit(dep);
    const done = await f.waitAll('active', 16);
    for (const nr of done) expect(nr.status?.runCount).toBe(1);
    // A parent's wall reaches its child's input.
    expect(
      done.find((nr) => nr.metadata.name === f.nr('top', 'n3'))?.status?.run?.input,
    ).toMatchObject({ mid: { ready: true } });
    const d = await eventually('deployment active', async () => {
      const got = await client.get('Deployment', dep);
      return got?.status?.state === 'active' ? got : undefined;
    });
    expect(d.status?.counts).toMatchObject({ total: 16, active: 16, error: 0 });
  });

  it('runs a noop role in one write: todo to active with its run recorded, never transition', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('m1', { jig: 'noop', flags: ['implicit'] });
    await f.createRole('m2', { jig: 'noop', flags: ['implicit'], requires: ['m1'] });
    await f.createRole('work', { requires: ['m2'], test: { delayMs: 30 } });
    for (const n of ['n1', 'n2']) await f.createNode(n);
    const dep = await f.createDeployment('d');
    for (const n of ['n1', 'n2']) await f.bind('work', n, dep);
    await eventually('all bound', async () => (await f.noderoles()).length === 6);
    // Every state each noderole of this test was written in, in order, from the API server.
    const seen = new Map<string, string[]>();
    const req = await new Watch(loadKubeConfig(kubeconfig)).watch(
      '/apis/crowbar.dev/v1alpha1/noderoles',
      {},
      (type: string, obj: NodeRole) => {
        const name = obj.metadata.name ?? '';
        if (type !== 'MODIFIED' || !name.includes(f.id)) return;
        const states = seen.get(name) ?? [];
        const state = obj.status?.state ?? '';
        if (states.at(-1) !== state) states.push(state);
        seen.set(name, states);
      },
      () => undefined,
    );
    try {
      await f.commit(dep);
      const done = await f.waitAll('active', 6);
      for (const nr of done) {
        const run = nr.status?.run;
        expect(nr.status?.runCount, nr.metadata.name).toBe(1);
        expect(run?.result).toBe('succeeded');
        expect(run?.finished).toBeTruthy();
        if (nr.spec.role === f.role('work')) continue;
        // The milestone's start and end are one write.
        expect(run?.started).toBe(run?.finished);
        expect(seen.get(nr.metadata.name ?? ''), nr.metadata.name).not.toContain('transition');
      }
      // The script-like role after them still runs as a start and an end.
      await eventually('the work runs seen', () =>
        ['n1', 'n2'].every((n) => seen.get(f.nr('work', n))?.includes('transition')),
      );
    } finally {
      req.abort();
    }
  });

  it('blocks the subtree of an error and recovers it on retry', async () => {
    const f = new Fleet(client, uid());
    await threeLevelGraph(f);
    await f.createNode('n1');
    await f.createNode('n2');
    const dep = await f.createDeployment('d');
    await f.bind('top', 'n1', dep);
    await f.bind('top', 'n2', dep);
    await eventually(
      'bound',
      async () =>
        (await f.noderoles()).filter((nr) => nr.status?.state === 'proposed').length === 7,
    );
    // Make mid on n1 fail through its proposed data (the test jig honours data.test.fail).
    await client.mergePatch(
      'NodeRole',
      f.nr('mid', 'n1'),
      { spec: { data: { test: { fail: true, failMessage: 'disk not found' } } } },
      'test',
    );
    await f.commit(dep);
    const failed = await f.waitState(f.nr('mid', 'n1'), 'error');
    expect(failed.status?.message).toMatch(/disk not found/);
    expect(failed.status?.run?.result).toBe('failed');
    await eventually('top on n1 blocked by the error', async () => {
      const nr = await client.get('NodeRole', f.nr('top', 'n1'));
      return (
        nr?.status?.state === 'blocked' &&
        nr.status.message?.includes(`${f.nr('mid', 'n1')} is in error`)
      );
    });
    // The other node's chain is unaffected.
    await f.waitState(f.nr('top', 'n2'), 'active');
    const deployment = await eventually('deployment error', async () => {
      const got = await client.get('Deployment', dep);
      return got?.status?.state === 'error' ? got : undefined;
    });
    expect(deployment.status?.counts?.error).toBe(1);

    // Fix the data and retry: the noderole and its subtree recover.
    await client.mergePatch(
      'NodeRole',
      f.nr('mid', 'n1'),
      { spec: { data: { test: { fail: false } }, retry: 1 } },
      'test',
    );
    const all = await f.waitAll('active', 7);
    expect(all.find((nr) => nr.metadata.name === f.nr('mid', 'n1'))?.status?.observedRetry).toBe(1);
  });

  it('ripples node death as §2.4 and re-runs the chain when the node is alive again', async () => {
    const f = new Fleet(client, uid());
    await threeLevelGraph(f);
    await f.createNode('n1');
    await f.createNode('n2');
    const dep = await f.createDeployment('d', 'committed');
    await f.bind('top', 'n1', dep);
    await f.bind('top', 'n2', dep);
    await f.waitAll('active', 7);
    const srvNode = (await f.noderoles()).find((nr) => nr.spec.role === f.role('srv'))?.spec.node;
    const victim = srvNode === f.node('n1') ? 'n2' : 'n1';
    await f.setAlive(victim, false);
    // Roots of the dead node go to todo, its descendants to blocked.
    await f.waitState(f.nr('base', victim), 'todo');
    await f.waitState(f.nr('mid', victim), 'blocked');
    await f.waitState(f.nr('top', victim), 'blocked');
    // Nothing on a dead node runs.
    await new Promise((r) => setTimeout(r, 400));
    expect((await client.get('NodeRole', f.nr('base', victim)))?.status?.state).toBe('todo');
    await f.setAlive(victim, true);
    const all = await f.waitAll('active', 7);
    expect(all.find((nr) => nr.metadata.name === f.nr('base', victim))?.status?.runCount).toBe(2);
    expect(
      all.find((nr) => nr.metadata.name === f.nr('top', victim === 'n1' ? 'n2' : 'n1'))?.status
        ?.runCount,
    ).toBe(1);
  });

  it('freezes an unavailable node without touching its states, and resumes when available', async () => {
    const f = new Fleet(client, uid());
    await threeLevelGraph(f);
    await f.createNode('n1', { available: false });
    await f.createNode('n2');
    await f.createNode('n3');
    const dep = await f.createDeployment('d', 'committed');
    // Bind n2 first so the cluster-wide srv lands there, not on the frozen node.
    await f.bind('top', 'n2', dep);
    await eventually('n2 bound', async () => (await f.noderoles()).length === 4);
    await f.bind('top', 'n1', dep);
    await f.waitState(f.nr('top', 'n2'), 'active');
    const n1 = async (): Promise<Map<string, string>> =>
      new Map([...(await f.states())].filter(([n]) => n.endsWith(f.node('n1'))));
    // The commit's own moves happen on a frozen node too (bound, then todo or blocked by its
    // parents); nothing runs there.
    const frozen = new Map([
      [f.nr('base', 'n1'), 'todo'],
      [f.nr('mid', 'n1'), 'blocked'],
      [f.nr('top', 'n1'), 'blocked'],
    ]);
    await eventually('n1 committed, nothing run', async () =>
      isDeepStrictEqual(await n1(), frozen),
    );
    // The annealer keeps running the rest of the fleet (n3 converges through passes made after
    // n1 froze), and n1 is left as it was.
    await f.bind('top', 'n3', dep);
    await f.waitState(f.nr('top', 'n3'), 'active');
    expect(await n1()).toEqual(frozen);
    await f.setAvailable('n1', true);
    await f.waitAll('active', 10);
  });

  it('loses no noderole and counts each run once when the operator is killed mid-run', async () => {
    const f = new Fleet(client, uid());
    await threeLevelGraph(f, 800);
    for (const n of ['n1', 'n2', 'n3']) await f.createNode(n);
    const dep = await f.createDeployment('d');
    for (const n of ['n1', 'n2', 'n3']) await f.bind('top', n, dep);
    await eventually(
      'bound',
      async () =>
        (await f.noderoles()).filter((nr) => nr.status?.state === 'proposed').length === 10,
    );
    await f.commit(dep);
    await eventually('runs in flight', async () =>
      [...(await f.states()).values()].includes('transition'),
    );
    op?.proc.kill('SIGKILL');
    await new Promise((r) => op?.proc.once('exit', r));
    op = await start(`annealer-${uid()}`);
    const all = await f.waitAll('active', 10, 90_000);
    for (const nr of all) expect(nr.status?.runCount, nr.metadata.name).toBe(1);
  });

  it('lets only one of two replicas anneal: every run starts exactly once', async () => {
    const second = await start(`annealer-${uid()}-b`);
    extra.push(second);
    const f = new Fleet(client, uid());
    await threeLevelGraph(f, 10);
    for (const n of ['n1', 'n2', 'n3', 'n4']) await f.createNode(n);
    const dep = await f.createDeployment('d');
    for (const n of ['n1', 'n2', 'n3', 'n4']) await f.bind('top', n, dep);
    await eventually(
      'bound',
      async () =>
        (await f.noderoles()).filter((nr) => nr.status?.state === 'proposed').length === 13,
    );
    await f.commit(dep);
    const all = await f.waitAll('active', 13);
    for (const nr of all) expect(nr.status?.runCount).toBe(1);
    const leaders = await Promise.all(
      [op, second].map(async (p) =>
        metricValue((await p!.http('/metrics')).body, 'crowbar_leader'),
      ),
    );
    expect(leaders.filter((l) => l === 1)).toHaveLength(1);
    const standby = leaders[0] === 1 ? second : op!;
    expect((await standby.http('/metrics')).body).not.toMatch(
      /^crowbar_runs_started_total\{[^}]*\} [1-9]/m,
    );
  });
});
