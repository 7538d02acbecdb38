/**
 * `kubectl crowbar` as a child process (the `cli/kubectl-crowbar` executable) against the real API
 * server: each command's output and exit code, and the objects it leaves behind.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { NodeRoleStatus } from '../../generated/crowbar.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { Fleet } from '../harness/fleet.ts';
import { checkGraphPng } from '../harness/graph-png.ts';
import { ROOT, startOperator } from '../harness/operator.ts';
import { ensureSystemDeployment } from '../../operator/controllers/deployment/system.ts';

const kubeconfig = inject('kubeconfig');
const client = testClient();
const BIN = join(ROOT, 'cli', 'kubectl-crowbar');
const FM = 'crowbar-test';
const tmp = mkdtempSync(join(tmpdir(), 'cli-test-'));
const cleanup: (() => Promise<unknown>)[] = [];
/** Nodes this file created: the operator puts a finalizer on them, so they go while it runs. */
const nodes: string[] = [];

beforeAll(async () => {
  // The system deployment always exists where an operator runs; here the test makes sure of it.
  // Listing first also waits out "storage is (re)initializing" right after the CRDs are created.
  for (const kind of ['Deployment', 'NodeRole', 'Node', 'Network'] as const)
    await eventually(`${kind} storage ready`, async () => (await client.list(kind)).length >= 0);
  await ensureSystemDeployment(client, FM);
});

afterAll(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], env: NodeJS.ProcessEnv = { KUBECONFIG: kubeconfig }) {
  const base = { ...process.env };
  delete base['KUBECONFIG'];
  return spawn(BIN, args, { env: { ...base, ...env } });
}

function collect(p: ChildProcessWithoutNullStreams) {
  const r = { stdout: '', stderr: '' };
  p.stdout.setEncoding('utf8').on('data', (d: string) => (r.stdout += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (r.stderr += d));
  const done = new Promise<Result>((resolve) => {
    p.on('close', (code) => {
      resolve({ code, ...r });
    });
  });
  return { r, done };
}

async function run(args: string[], env?: NodeJS.ProcessEnv): Promise<Result> {
  return collect(start(args, env)).done;
}

async function ok(args: string[]): Promise<string> {
  const r = await run(args);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
}

/** A one-line error on stderr and exit code 1, as kubectl. */
async function fails(args: string[], message: RegExp, env?: NodeJS.ProcessEnv): Promise<void> {
  const r = await run(args, env);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^error: [^\n]+\n$/);
  expect(r.stderr).toMatch(message);
}

/** A world without an operator: the test writes status as the annealer would. */
async function world(id: string) {
  const dep = `cli-${id}`;
  const n1 = `n1-${id}.lab.example.com`;
  const n2 = `n2-${id}.lab.example.com`;
  await client.create(
    'Deployment',
    { metadata: { name: dep }, spec: { parent: 'system', state: 'committed' } },
    FM,
  );
  cleanup.push(() => client.delete('Deployment', dep));
  for (const n of [n1, n2]) {
    await client.create('Node', { metadata: { name: n }, spec: { available: true } }, FM);
    nodes.push(n);
    cleanup.push(() => client.delete('Node', n));
    await client.mergePatchStatus('Node', n, { status: { alive: true } }, FM);
  }
  const nr = async (role: string, node: string, status: NodeRoleStatus) => {
    const name = `${role}-${id}.${node}`;
    await client.create(
      'NodeRole',
      { metadata: { name }, spec: { role: `${role}-${id}`, node, deployment: dep } },
      FM,
    );
    cleanup.push(() => client.delete('NodeRole', name));
    await client.mergePatchStatus('NodeRole', name, { status }, FM);
    return name;
  };
  return { dep, n1, n2, nr };
}

describe('kubectl crowbar', () => {
  it('finds the cluster as kubectl does: --kubeconfig, KUBECONFIG, --context; errors are one line', async () => {
    const viaFlag = await run(['status', `--kubeconfig=${kubeconfig}`], { HOME: tmp });
    expect(viaFlag.stderr).toBe('');
    expect(viaFlag.code).toBe(0);
    expect(viaFlag.stdout).toMatch(/^DEPLOYMENT/);
    expect(viaFlag.stdout).toMatch(/^system /m);
    // KUBECONFIG is a path list; a missing file in it is skipped, as kubectl does.
    const viaEnv = await run(['status'], { KUBECONFIG: `${join(tmp, 'missing')}:${kubeconfig}` });
    expect(viaEnv.stderr).toBe('');
    expect(viaEnv.code).toBe(0);
    expect(viaEnv.stdout).toMatch(/^system /m);
    await fails(['status'], /none of the files in KUBECONFIG exists/, {
      KUBECONFIG: join(tmp, 'missing'),
    });
    const current = new KubeConfig();
    current.loadFromFile(kubeconfig);
    expect(await ok(['status', '--context', current.getCurrentContext()])).toMatch(/^system /m);
    await fails(['status', '--context', 'nope'], /context "nope" does not exist/);
    await fails(['status'], /no kubeconfig: pass --kubeconfig, set KUBECONFIG/, { HOME: tmp });
    await fails(['status', '--kubeconfig', join(tmp, 'missing')], /cannot load kubeconfig/);
    await fails(['frobnicate'], /unknown command "frobnicate"/);
    await fails(['bind', 'only-one'], /usage: kubectl crowbar bind ROLE NODE/);
    await fails(['status', '--bogus'], /Unknown option '--bogus'/);
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('why NODEROLE');
  });

  it('bind, propose/commit, retry and available write the spec fields', async () => {
    const id = uid();
    const { dep, n1 } = await world(id);
    const role = `r-${id}`;
    const name = `${role}.${n1}`;
    cleanup.push(() => client.delete('NodeRole', name));
    expect(await ok(['bind', role, n1, '--deployment', dep])).toBe(
      `noderole.crowbar.dev/${name} created\n`,
    );
    expect((await client.get('NodeRole', name))?.spec).toMatchObject({
      role,
      node: n1,
      deployment: dep,
    });
    await fails(['bind', role, n1, '--deployment', dep], /already exists/);
    const sys = `s-${id}`;
    cleanup.push(() => client.delete('NodeRole', `${sys}.${n1}`));
    await ok(['bind', sys, n1]);
    expect((await client.get('NodeRole', `${sys}.${n1}`))?.spec.deployment).toBe('system');

    expect(await ok(['propose', 'deployment', dep])).toBe(
      `deployment.crowbar.dev/${dep} patched\n`,
    );
    expect((await client.get('Deployment', dep))?.spec.state).toBe('proposed');
    await ok(['commit', 'deployment', dep]);
    expect((await client.get('Deployment', dep))?.spec.state).toBe('committed');
    await ok(['propose', 'node', n1]);
    expect((await client.get('Node', n1))?.spec.proposed).toBe(true);
    await ok(['commit', 'node', n1]);
    expect((await client.get('Node', n1))?.spec.proposed).toBe(false);
    await ok(['propose', 'noderole', name]);
    expect((await client.get('NodeRole', name))?.spec.proposed).toBe(true);
    await ok(['commit', 'nr', name]);
    expect((await client.get('NodeRole', name))?.spec.proposed).toBe(false);
    await fails(['commit', 'network', 'x'], /use deployment, node or noderole/);
    await fails(
      ['commit', 'deployment', `nope-${id}`],
      /deployment.crowbar.dev "nope-.*" not found/,
    );

    expect(await ok(['retry', name])).toBe(`noderole.crowbar.dev/${name} patched (retry 1)\n`);
    await ok(['retry', name]);
    expect((await client.get('NodeRole', name))?.spec.retry).toBe(2);
    await fails(['retry', `nope-${id}`], /noderole.crowbar.dev "nope-.*" not found/);

    await ok(['available', n1, 'off']);
    expect((await client.get('Node', n1))?.spec.available).toBe(false);
    await ok(['available', n1, 'on']);
    expect((await client.get('Node', n1))?.spec.available).toBe(true);
    await fails(['available', n1, 'maybe'], /on or off/);
  });

  it('status shows the tree, counts, bars and errors with their log tail; -w follows it', async () => {
    const id = uid();
    const { dep, n1, n2, nr } = await world(id);
    await nr('base', n1, { state: 'active' });
    const bad = await nr('disk', n2, {
      state: 'error',
      message: 'run 1 failed: disk not found',
      run: { number: 1, result: 'failed', exitCode: 3, logTail: 'probing sda\nno disk\n' },
    });
    const waiting = await nr('top', n1, { state: 'todo' });
    const out = await ok(['status', dep]);
    expect(out).toMatch(new RegExp(`^${dep} +\\S+ +\\[#+\\.+\\]  33% +1/3`, 'm'));
    expect(out).toContain(
      `✗ ${bad}: run 1 failed: disk not found\n    | probing sda\n    | no disk`,
    );
    expect(await ok(['status'])).toMatch(new RegExp(`^system[\\s\\S]*\\n  └ ${dep} `, 'm'));
    await fails(['status', `nope-${id}`], /not found/);

    const p = start(['status', dep, '-w']);
    const { r, done } = collect(p);
    await eventually('first screen', () => r.stdout.includes('1/3'));
    await client.mergePatchStatus('NodeRole', waiting, { status: { state: 'active' } }, FM);
    await eventually('redrawn after the change', () => r.stdout.includes('2/3'));
    p.kill('SIGINT');
    const end = await done;
    expect(end.code).toBe(0);
    expect(end.stderr).toBe('');
  });

  it('why says what a noderole waits for, in one screen', async () => {
    const id = uid();
    const { dep, n1, n2, nr } = await world(id);
    const parent = await nr('mid', n1, { state: 'error', message: 'boom' });
    const child = await nr('top', n1, {
      state: 'blocked',
      parents: [parent],
      cohort: 1,
      message: `blocked by ${parent}`,
    });
    await client.mergePatch('Node', n1, { spec: { available: false } }, FM);
    await client.mergePatchStatus('Node', n1, { status: { alive: false } }, FM);
    await client.mergePatch('Deployment', dep, { spec: { state: 'proposed' } }, FM);
    const out = await ok(['why', child]);
    expect(out).toContain(`state: blocked: blocked by ${parent}`);
    expect(out).toContain(`parent ${parent} is error`);
    expect(out).toContain(`its node ${n1} is not alive`);
    expect(out).toContain(`its node ${n1} is not available`);
    expect(out).toContain(`its deployment ${dep} is proposed`);
    expect(out.split('\n').length).toBeLessThan(25);

    // A held run queue: a todo noderole behind others in (cohort, name) order.
    const net = `network-${id}.${n2}`;
    await client.create(
      'NodeRole',
      { metadata: { name: net }, spec: { role: `network-${id}`, node: n2, deployment: dep } },
      FM,
    );
    cleanup.push(() => client.delete('NodeRole', net));
    await client.mergePatchStatus(
      'NodeRole',
      net,
      {
        status: {
          state: 'todo',
          cohort: 5,
          conditions: [
            {
              type: 'Addressed',
              status: 'False',
              reason: 'RangeFull',
              message: 'range host is full',
              lastTransitionTime: new Date().toISOString(),
            },
          ],
        },
      },
      FM,
    );
    await nr('early', n2, { state: 'todo', cohort: 0 });
    const q = await ok(['why', net, '--max-concurrent-runs', '1']);
    expect(q).toMatch(/run queue: \d+ of 1 run slots in use, \d+ todo noderole\(s\) ahead/);
    expect(q).toContain(`network ${id}: Addressed=False (RangeFull): range host is full`);
    await fails(['why', `nope-${id}`], /not found/);
  });

  it('logs prints the last run and, for a Job run, what it finds of the pod logs', async () => {
    const id = uid();
    const { n1, n2, nr } = await world(id);
    const name = await nr('x', n1, {
      state: 'error',
      runCount: 2,
      run: {
        number: 2,
        result: 'failed',
        exitCode: 7,
        executor: 'inline',
        started: '2026-11-30T10:00:00Z',
        finished: '2026-11-30T10:00:05Z',
        logTail: 'step 1\nstep 2 failed\n',
      },
    });
    expect(await ok(['logs', name])).toBe(
      `run 2 of ${name}: failed, exit code 7, executor inline\nstarted:  2026-11-30T10:00:00Z\nfinished: 2026-11-30T10:00:05Z\n--- log tail ---\nstep 1\nstep 2 failed\n`,
    );
    const job = await nr('j', n2, {
      state: 'transition',
      run: { number: 1, id: `j-${id}.${n2}.run-1`, result: 'running', executor: 'job' },
    });
    expect(await ok(['logs', job])).toMatch(/--- job j-.*-r1-[0-9a-f]{8}: no pods found ---/);
    const fresh = await nr('y', n2, { state: 'todo' });
    expect(await ok(['logs', fresh])).toMatch(/has not run yet/);
  });

  it('graph writes dot, svg and png of the noderole graph', async () => {
    const id = uid();
    const { dep, n1, n2, nr } = await world(id);
    const a = await nr('a', n1, { state: 'active' });
    const b = await nr('b', n1, { state: 'error', parents: [a] });
    await nr('c', n2, { state: 'blocked', parents: [b] });
    const dot = await ok(['graph', '--deployment', dep]);
    expect(dot).toMatch(/^digraph crowbar \{/);
    expect(dot).toContain(`"${a}" -> "${b}";`);
    expect(dot).toContain(`label="${n2}"`);
    const svg = join(tmp, `g-${id}.svg`);
    await ok(['graph', '-d', dep, '-o', 'svg', '--file', svg]);
    const esc = (x: string) => x.replace(/-/g, '&#45;');
    expect(readFileSync(svg, 'utf8')).toContain(`<title>${esc(a)}&#45;&gt;${esc(b)}</title>`);
    const png = join(tmp, `g-${id}.png`);
    await ok(['graph', '-d', dep, '-o', 'png', '--file', png]);
    expect(readFileSync(png).subarray(1, 4).toString()).toBe('PNG');
    expect(statSync(png).size).toBeGreaterThan(1000);
    // Its pixels: every box in its state's colour and every edge drawn, where dot lays them out.
    const seen = checkGraphPng(readFileSync(png), dot);
    expect(seen).toMatchObject({ nodes: 3, edges: 2, missing: [] });
    // The check sees missing edges: the same layout with the edges invisible fails it.
    const hidden = dot.replace('edge [color="#555555"];', 'edge [style=invis];');
    expect(hidden).not.toBe(dot);
    const bare = spawnSync('dot', ['-Tpng'], { input: hidden });
    expect(checkGraphPng(bare.stdout, dot).missing).toEqual([
      expect.stringMatching(/^edge .* -> .*: no line at/),
      expect.stringMatching(/^edge .* -> .*: no line at/),
    ]);
    await fails(['graph', '-o', 'gif'], /unknown output format "gif"/);
  });

  it('init creates the admin network and node from flags, idempotently; refuses bad answers', async () => {
    const id = uid();
    const network = `adm-${id}`;
    const node = `admin-${id}.lab.example.com`;
    cleanup.push(() => client.delete('Network', network));
    nodes.push(node);
    cleanup.push(() => client.delete('Node', node));
    const flags = [
      'init',
      '--network',
      network,
      '--subnet',
      '10.77.0.0/24',
      '--range',
      'admin=10.77.0.10-10.77.0.11',
      '--range',
      'host=10.77.0.81-10.77.0.160',
      '--router',
      '10.77.0.1',
      '--node',
      node,
      '--mac',
      '52:54:00:aa:bb:01',
    ];
    const first = await ok(flags);
    expect(first).toContain(`network.crowbar.dev/${network} applied`);
    expect(first).toMatch(/deployment.crowbar.dev\/system (created|unchanged)/);
    expect(await ok(flags)).toContain(`node.crowbar.dev/${node} applied`);
    const net = await client.get('Network', network);
    expect(net?.spec).toMatchObject({
      category: 'admin',
      subnet: '10.77.0.0/24',
      v6prefix: 'auto',
      router: { address: '10.77.0.1' },
      ranges: [
        { name: 'admin', first: '10.77.0.10', last: '10.77.0.11' },
        { name: 'host', first: '10.77.0.81', last: '10.77.0.160' },
      ],
    });
    expect((await client.get('Node', node))?.spec).toMatchObject({
      admin: true,
      available: true,
      macs: ['52:54:00:aa:bb:01'],
    });
    expect((await client.get('Deployment', 'system'))?.spec.state).toBe('committed');

    const other = `bad-${id}.lab.example.com`;
    await fails(
      ['init', '--node', other, '--subnet', '10.78.0.0/24', '--range', 'host=10.79.0.1-10.79.0.9'],
      /not an IPv4 address inside 10.78.0.0\/24/,
    );
    await fails(['init', '--node', 'admin.lab', '--subnet', '10.78.0.0/24'], /not an FQDN/);
    await fails(['init', '--node', other, '--subnet', '10.78.0.5/24'], /not a network address/);
    await fails(['init', '--node', other, '--subnet', '10.78.0.0/24', '--mac', 'AA'], /not a MAC/);
    expect(await client.get('Node', other)).toBeUndefined();
  });

  it('init --wizard asks through a terminal, re-asks a bad answer, shows the plan, creates it', async () => {
    const id = uid();
    const network = `wiz-${id}`;
    const node = `admin-${id}.wiz.example.com`;
    cleanup.push(() => client.delete('Network', network));
    nodes.push(node);
    cleanup.push(() => client.delete('Node', node));
    // script(1) gives the CLI a pseudo-terminal; the test answers each prompt as it appears.
    const p = spawn('script', ['-qfec', `${BIN} init --wizard`, '/dev/null'], {
      env: { ...process.env, KUBECONFIG: kubeconfig },
    });
    const { r, done } = collect(p);
    const answer = async (prompt: string, text: string, nth = 1) => {
      await eventually(`prompt ${prompt}`, () => r.stdout.split(prompt).length > nth);
      p.stdin.write(`${text}\r`);
    };
    await answer('DNS domain', `wiz-${id}.example.com`);
    await answer('Admin network name', network);
    await answer('Admin subnet', '10.88.0.7/24');
    await eventually('the bad subnet is refused', () => r.stdout.includes('not a network address'));
    await answer('Admin subnet', '10.88.0.0/24', 2);
    await answer('Ranges', ''); // the offered default
    await answer('Router', '');
    await answer('IPv6 prefix', 'auto');
    await answer('Admin node FQDN', node);
    await answer('Admin node MACs', '52:54:00:cc:dd:01');
    await answer('Create it?', 'yes');
    const end = await done;
    expect(end.code).toBe(0);
    expect(r.stdout).toContain(
      `Network ${network}: category admin, subnet 10.88.0.0/24, v6prefix auto, router 10.88.0.1`,
    );
    expect(r.stdout).toContain('range host: 10.88.0.81 - 10.88.0.160');
    expect(r.stdout).toContain(`node.crowbar.dev/${node} applied`);
    expect((await client.get('Network', network))?.spec.ranges).toHaveLength(3);
    expect((await client.get('Node', node))?.spec).toMatchObject({
      admin: true,
      macs: ['52:54:00:cc:dd:01'],
    });
  });
  it('drives the real operator: bind, why, commit, status to active, an error, retry', async () => {
    // Last in the file: the operator then anneals what earlier tests wrote by hand.
    const op = await startOperator({
      kubeconfig,
      logDir: inject('cpDir'),
      identity: `cli-${uid()}`,
      args: [`--lease-name=cli-${uid()}`],
    });
    try {
      await eventually('operator ready', async () => (await op.http('/readyz')).status === 200);
      const f = new Fleet(client, uid());
      await f.createRole('base', { flags: ['implicit'], test: { delayMs: 20 } });
      await f.createRole('top', { requires: ['base'], test: { delayMs: 20 } });
      const n1 = await f.createNode('n1');
      const dep = await f.createDeployment('d');
      cleanup.push(() => client.delete('Deployment', dep));
      nodes.push(n1);
      cleanup.push(() => client.delete('Node', n1));
      const top = f.nr('top', 'n1');
      const base = f.nr('base', 'n1');
      await ok(['bind', f.role('top'), n1, '--deployment', dep]);
      await f.waitAll('proposed', 2);
      const why = await ok(['why', top]);
      expect(why).toContain(`its deployment ${dep} is proposed`);
      expect(why).toContain(`parent ${base} is proposed`);
      await client.mergePatch(
        'NodeRole',
        top,
        { spec: { data: { test: { fail: true, failMessage: 'no disk' } } } },
        FM,
      );
      await ok(['commit', 'deployment', dep]);
      await f.waitState(top, 'error');
      const st = await ok(['status', dep]);
      expect(st).toMatch(new RegExp(`^${dep} +error +\\[#{10}\\.{10}\\]  50% +1/2`, 'm'));
      expect(st).toContain(`✗ ${top}: `);
      expect(st).toContain('no disk');
      expect(await ok(['logs', top])).toMatch(/^run 1 of .*: failed/);
      expect(await ok(['why', top])).toContain('it is in error');
      await client.mergePatch('NodeRole', top, { spec: { data: { test: { fail: false } } } }, FM);
      await ok(['retry', top]);
      await f.waitAll('active', 2);
      await eventually('deployment active in status', async () =>
        new RegExp(`^${dep} +active +\\[#{20}\\] 100% +2/2`, 'm').test(await ok(['status', dep])),
      );
      expect(await ok(['why', top])).toContain('it is active: it waits for nothing');
    } finally {
      // Clean up everything while the operator still runs: it owns the Nodes' finalizers.
      for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
      await eventually(
        'the nodes of this file deleted',
        async () => {
          for (const n of nodes) if ((await client.get('Node', n)) !== undefined) return false;
          return true;
        },
        60_000,
      );
      await op.stop();
    }
  });
});
