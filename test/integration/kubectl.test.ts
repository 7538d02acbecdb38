/** What people see with the real kubectl: categories, printer columns and field descriptions. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { bin } from '../harness/bins.ts';
import { testClient, uid } from '../harness/context.ts';

const kubectl = async (...args: string[]): Promise<string> =>
  (
    await promisify(execFile)(bin('kubectl'), args, {
      env: { ...process.env, KUBECONFIG: inject('kubeconfig') },
    })
  ).stdout;

describe('kubectl', () => {
  // kubectl explain reads `a.b.c` as resource `a` and field path `b.c`, so the group cannot be
  // written into the argument; the short name or --api-version picks crowbar.dev's Node.
  it.each([
    [['explain', 'cbnode.spec']],
    [['explain', 'nodes.spec', '--api-version=crowbar.dev/v1alpha1']],
  ])('explains the Node spec with the schema descriptions (%j)', async (args) => {
    const out = await kubectl(...args);
    expect(out).toMatch(/GROUP:\s+crowbar\.dev/);
    expect(out).toMatch(/bootEnv\s+<string>/);
    expect(out).toMatch(/Desired boot environment: sledgehammer/);
    expect(out).toMatch(/available\s+<boolean>/);
  });

  it('lists every Crowbar kind under the crowbar category and shows noderole columns', async () => {
    const id = uid();
    const client = testClient();
    const node = `k-${id}.lab.example.com`;
    await client.create('Node', { metadata: { name: node }, spec: {} }, 'test');
    await client.create('Role', { metadata: { name: `k-${id}` }, spec: { jig: 'noop' } }, 'test');
    await client.create(
      'NodeRole',
      {
        metadata: { name: `k-${id}.${node}` },
        spec: { node, role: `k-${id}`, deployment: 'system' },
      },
      'test',
    );
    await client.applyStatus(
      'NodeRole',
      `k-${id}.${node}`,
      { state: 'todo', runCount: 0, cohort: 2, message: 'waiting' },
      'test',
    );
    const all = await kubectl('get', 'crowbar');
    expect(all).toContain(`node.crowbar.dev/${node}`);
    expect(all).toContain(`role.crowbar.dev/k-${id}`);
    expect(all).toContain(`noderole.crowbar.dev/k-${id}.${node}`);
    const wide = await kubectl('get', 'noderoles', '-o', 'wide', `k-${id}.${node}`);
    const [header, row] = wide.trim().split('\n');
    expect(header?.split(/\s+/)).toEqual([
      'NAME',
      'NODE',
      'ROLE',
      'DEPLOYMENT',
      'STATE',
      'RUNS',
      'COHORT',
      'PARENTS',
      'MESSAGE',
      'AGE',
    ]);
    expect(row).toMatch(new RegExp(`${node}\\s+k-${id}\\s+system\\s+todo\\s+0\\s+2`));
    const short = await kubectl('get', 'cbnode', node);
    expect(short).toMatch(/NAME\s+ADMIN\s+ALIVE\s+AVAILABLE\s+BOOTENV\s+STATE\s+DEPLOYMENT\s+AGE/);
  });
});
