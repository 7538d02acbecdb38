/**
 * Poison pills against the real API server and the real operator: one bad object ends as an
 * error on itself, said in its message, and the rest of the fleet converges in the same test.
 *
 * A parent cycle written into status.parents by hand (what issue 14 saw in the lab: one
 * noderole stayed blocked with a stale message, the other ran again under a blocked parent).
 * The status policy refuses such writes from anyone but the operator (status-policy.test.ts);
 * this is what happens if one gets through anyway (a break-glass account, an older install).
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { eventually, testClient, uid } from '../harness/context.ts';
import { Fleet } from '../harness/fleet.ts';
import { startOperator, type OperatorProc } from '../harness/operator.ts';

const client = testClient();
let op: OperatorProc | undefined;

/** Reconciles of `controller` that ended in `outcome`, from the operator's /metrics. */
async function reconciles(controller: string, outcome: string): Promise<number> {
  const text = (await op?.http('/metrics'))?.body ?? '';
  const line = text
    .split('\n')
    .find((l) =>
      l.startsWith(`crowbar_reconcile_total{controller="${controller}",outcome="${outcome}"}`),
    );
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

beforeAll(async () => {
  op = await startOperator({
    kubeconfig: inject('kubeconfig'),
    logDir: inject('cpDir'),
    identity: `poison-${uid()}`,
    args: [`--lease-name=poison-${uid()}`],
  });
  await eventually('operator ready', async () => (await op?.http('/readyz'))?.status === 200);
});

afterAll(async () => {
  await op?.stop();
});

describe('poison pills', () => {
  it('a parent cycle written through /status: both members in error naming it, the rest converges', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('a', { test: { delayMs: 10 } });
    await f.createRole('b', { requires: ['a'], test: { delayMs: 10 } });
    await f.createRole('c', { test: { delayMs: 10 } });
    for (const n of ['n1', 'n2', 'n3']) await f.createNode(n);
    const dep = await f.createDeployment('d', 'committed');
    await f.bind('b', 'n1', dep);
    await f.bind('c', 'n2', dep);
    await f.waitAll('active', 3);
    const errorsBefore = await reconciles('annealer', 'error');

    // b.n1's parent is a.n1; make a.n1's parent b.n1 and re-run a.n1 (as the lab did).
    const [a, b] = [f.nr('a', 'n1'), f.nr('b', 'n1')];
    expect((await client.get('NodeRole', b))?.status?.parents).toEqual([a]);
    await client.mergePatchStatus(
      'NodeRole',
      a,
      { status: { parents: [b], state: 'todo', message: 'tampered' } },
      'poison-test',
    );
    // Unaffected work arriving after the tampering converges in the same test.
    await f.bind('c', 'n3', dep);

    for (const name of [a, b]) {
      const nr = await f.waitState(name, 'error');
      expect(nr.status?.message).toBe(
        `its status.parents form a cycle (${[a, b].sort().join(', ')}), which the operator never writes: someone edited status by hand; delete these noderoles and bind them again`,
      );
      const ready = nr.status?.conditions?.find((c) => c.type === 'Ready');
      expect(ready?.status).toBe('False');
    }
    await f.waitState(f.nr('c', 'n3'), 'active');
    expect((await client.get('NodeRole', f.nr('c', 'n2')))?.status?.state).toBe('active');
    // Neither ran again under the cycle, and no pass threw.
    for (const name of [a, b]) {
      expect((await client.get('NodeRole', name))?.status?.runCount).toBe(1);
    }
    expect(await reconciles('annealer', 'error')).toBe(errorsBefore);
  });
});
