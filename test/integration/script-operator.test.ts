/**
 * The script jig and aliveness inside the real operator process: Nodes whose "machines" are real
 * OpenSSH servers, each in its own network namespace on a lab bridge this file creates and
 * removes. Traffic goes only to the lab's own 10.251.S.0/24 and to loopback.
 */
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { JOURNAL_DIRS } from '../../operator/jigs/script/protocol.ts';
import { hostname, release } from 'node:os';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import { purposeToken, tokenSecretName } from '../../operator/api/tokens.ts';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { Fleet } from '../harness/fleet.ts';
import { startOperator, type OperatorProc } from '../harness/operator.ts';
import { freePort } from '../harness/process.ts';
import { labNetworkSpec } from '../harness/netns.ts';
import { SshFleet } from '../harness/ssh-fleet.ts';
import type { KeyPair } from '../harness/sshd.ts';

const kubeconfig = inject('kubeconfig');
const client = testClient();
const core = loadKubeConfig(kubeconfig).makeApiClient(CoreV1Api);
const FM = 'crowbar-test';
const NS = 'default';
const id = uid();
const f = new Fleet(client, id);
const keySecret = `cbt-ssh-${id}`;
const machines = new SshFleet({ prefix: `cbt-sop-${id}`, noderoleTag: id });
let key: KeyPair;
let op: OperatorProc | undefined;
let apiPort = 0;
let dep = '';
const net = `lab-${id}`;

/**
 * A Node whose machine is lab node `short` (or any address). Its address reaches status.addresses
 * the way every address does: a hint on the Node and a binding to the lab's unmanaged network.
 */
async function createNode(short: string, address?: string): Promise<string> {
  const name = f.node(short);
  const ip = address ?? machines.lab.nodes.get(short)?.address;
  await client.create(
    'Node',
    {
      metadata: { name },
      spec: {
        available: true,
        deployment: 'system',
        ...(ip === undefined ? {} : { hints: { [`${net}-v4addr`]: ip } }),
      },
    },
    FM,
  );
  if (ip !== undefined) {
    await client.create(
      'NodeRole',
      {
        metadata: { name: `network-${net}.${name}` },
        spec: { role: `network-${net}`, node: name, deployment: dep },
      },
      FM,
    );
    await eventually(`${short} has its address`, async () =>
      (await node(short)).status?.addresses?.some((a) => a.address.startsWith(`${ip}/`)),
    );
  }
  return name;
}

async function node(short: string): Promise<Node> {
  const n = await client.get('Node', f.node(short));
  if (!n) throw new Error(`node ${short} is gone`);
  return n;
}

const aliveCond = (n: Node) => n.status?.conditions?.find((c) => c.type === 'Alive');

async function waitAlive(short: string, alive: boolean, reason?: RegExp): Promise<Node> {
  return eventually(
    `${short} alive=${alive}`,
    async () => {
      const n = await node(short);
      const c = aliveCond(n);
      return n.status?.alive === alive && (!reason || reason.test(`${c?.reason} ${c?.message}`))
        ? n
        : undefined;
    },
    30_000,
    150,
  );
}

async function forceCheck(short: string): Promise<void> {
  await client.mergePatch(
    'Node',
    f.node(short),
    { metadata: { annotations: { 'crowbar.dev/check-alive': String(Date.now()) } } },
    FM,
  );
}

const FACTS = `#!/bin/sh
set -eu
marker=$(jq -r '.lab.marker // "none"' "$CROWBAR_INPUT")
echo "facts of $CROWBAR_NODE, run $CROWBAR_RUN"
jq -n --arg h "$(hostname)" --arg k "$(uname -r)" --arg m "$marker" \\
  '{facts: {hostname: $h, kernel: $k, marker: $m}}' > "$CROWBAR_OUTPUT"
`;

const REPORT = `#!/bin/sh
set -eu
kernel=$(jq -r '.facts.kernel' "$CROWBAR_INPUT")
echo "parent says kernel $kernel"
jq -n --arg k "$kernel" '{report: {kernel: $k}}' > "$CROWBAR_OUTPUT"
`;

beforeAll(async () => {
  key = await machines.generateKey('root');
  const intruder = await machines.generateKey('intruder');
  await machines.start(['n1', 'n2', 'n3', 'n4'], {
    // n4 lets in only another key: the operator's is refused.
    authorizedKeys: (n) => [n === 'n4' ? intruder.publicKey : key.publicKey],
    quietRootShell: true,
  });
  const { lab } = machines;
  // The lab subnet as an unmanaged network: addresses only as the nodes' hints ask.
  await client.create(
    'Network',
    {
      metadata: { name: net },
      spec: labNetworkSpec(lab.subnet),
    },
    FM,
  );
  await f.createRole('facts', {
    jig: 'script',
    flags: ['implicit'],
    script: { inline: FACTS },
  });
  await f.createRole('report', {
    jig: 'script',
    requires: ['facts'],
    script: { inline: REPORT },
  });
  await f.createRole('echo', {
    jig: 'script',
    script: { inline: '#!/bin/sh\ncat "$CROWBAR_INPUT"\ncp "$CROWBAR_INPUT" "$CROWBAR_OUTPUT"\n' },
  });
  await core.createNamespacedConfigMap({
    namespace: NS,
    body: {
      metadata: { name: `cbt-fail-${id}` },
      data: {
        'run.sh': '#!/bin/sh\necho "checking disks"\necho "disk /dev/sdz missing" >&2\nexit 3\n',
      },
    },
  });
  await f.createRole('fail', {
    jig: 'script',
    script: { configMapRef: { namespace: NS, name: `cbt-fail-${id}`, key: 'run.sh' } },
  });
  await f.createRole('nocm', {
    jig: 'script',
    script: { configMapRef: { namespace: NS, name: `cbt-missing-${id}`, key: 'run.sh' } },
  });
  dep = await f.createDeployment('d', 'committed');
  apiPort = await freePort();
  op = await startOperator({
    kubeconfig,
    logDir: inject('cpDir'),
    identity: `script-${id}`,
    args: [
      `--lease-name=script-${id}`,
      // The Secret does not exist yet: the first test creates it.
      `--ssh-key-secret=${NS}/${keySecret}`,
      '--alive-interval-ms=1000',
      `--api-addr=127.0.0.1:${apiPort}`,
    ],
  });
  await eventually(`role network-${net}`, () => client.get('Role', `network-${net}`));
});

afterAll(async () => {
  try {
    await op?.stop();
    // CBT_KEEP_LOG=<path> keeps the operator's log for debugging.
    if (process.env['CBT_KEEP_LOG']) cpSync(op?.log ?? '/dev/null', process.env['CBT_KEEP_LOG']);
  } finally {
    for (const name of [keySecret]) {
      await core.deleteNamespacedSecret({ name, namespace: NS }).catch(() => undefined);
    }
    await core
      .deleteNamespacedConfigMap({ name: `cbt-fail-${id}`, namespace: NS })
      .catch(() => undefined);
    await client.delete('Network', net).catch(() => undefined);
    rmSync(`/tmp/pwned-${id}`, { force: true });
    // Last: nothing above throws, and this must run even when stopping the operator failed.
    await machines.destroy();
  }
});

describe('script jig in the operator', () => {
  it('fails runs clearly while the SSH key Secret is missing, and works once it exists', async () => {
    await createNode('n1');
    // The check cannot decide without a key: it says why and leaves status.alive alone.
    const n = await eventually('n1 says the key is missing', async () => {
      const got = await node('n1');
      return aliveCond(got)?.reason === 'SshKeyMissing' ? got : undefined;
    });
    expect(aliveCond(n)?.status).toBe('Unknown');
    expect(aliveCond(n)?.message).toContain(
      `SSH key Secret ${NS}/${keySecret} not found: create it with kubectl create secret generic ${keySecret} -n ${NS}`,
    );
    await f.setAlive('n1', true); // as if it had reported itself
    const nr = await f.bind('facts', 'n1', dep, { lab: { marker: 'm1' } });
    const failed = await f.waitState(nr, 'error');
    expect(failed.status?.message).toMatch(/SSH key Secret .* not found: create it with kubectl/);

    await core.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: keySecret },
        data: { id_ed25519: key.privateKey.toString('base64') },
      },
    });
    const alive = await waitAlive('n1', true, /Reachable/);
    expect(alive.status?.sshHostKey).toBe(machines.sshd('n1').hostKey.fingerprint);
    await client.mergePatch('NodeRole', nr, { spec: { retry: 1 } }, FM);
    const done = await f.waitState(nr, 'active');
    expect(done.status?.wall).toEqual({
      facts: { hostname: hostname(), kernel: release(), marker: 'm1' },
    });
  });

  it("returns the script's data as the wall and in the child's run input", async () => {
    await createNode('n2');
    await waitAlive('n2', true);
    await f.bind('report', 'n2', dep);
    const child = await f.waitState(f.nr('report', 'n2'), 'active');
    const parent = await f.waitState(f.nr('facts', 'n2'), 'active');
    expect(parent.status?.wall).toMatchObject({ facts: { kernel: release() } });
    expect(child.status?.run?.input).toMatchObject({ facts: { kernel: release() } });
    expect(child.status?.wall).toEqual({ report: { kernel: release() } });
    expect(child.status?.run?.logTail).toContain(`parent says kernel ${release()}`);
  });

  it('errors a failing script with its output, and a missing ConfigMap clearly', async () => {
    const bad = await f.bind('fail', 'n2', dep);
    const nr = await f.waitState(bad, 'error');
    expect(nr.status?.message).toMatch(/exited with status 3/);
    expect(nr.status?.run?.exitCode).toBe(3);
    expect(nr.status?.run?.logTail).toContain('checking disks\ndisk /dev/sdz missing');
    // A noderole in error holds up its node (§3.1): clear it before the next run there.
    await client.delete('NodeRole', bad);
    const nocm = await f.waitState(await f.bind('nocm', 'n2', dep), 'error');
    expect(nocm.status?.message).toMatch(new RegExp(`ConfigMap ${NS}/cbt-missing-${id} not found`));
  });

  it('delivers a hostile attribute value verbatim and executes nothing', async () => {
    const pwned = `/tmp/pwned-${id}`;
    const hostile = `$(touch ${pwned})\`touch ${pwned}\`'"; touch ${pwned}; '\n"\\\n\t$HOME \${IFS}`;
    const nr = await f.bind('echo', 'n1', dep, { payload: hostile, [`k$(touch ${pwned})`]: 1 });
    const done = await f.waitState(nr, 'active');
    expect(done.status?.wall?.['payload']).toBe(hostile);
    expect(done.status?.wall?.[`k$(touch ${pwned})`]).toBe(1);
    expect(existsSync(pwned)).toBe(false);
  });

  it('resolves a secretRef at run time and keeps the value out of status, Events, logs and node files', async () => {
    const value = `pw-${id}-Zq9x`;
    const secretName = `cbt-db-${id}`;
    await core.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: secretName },
        data: { password: Buffer.from(value).toString('base64') },
      },
    });
    const template = { db: { password: { secretRef: { name: secretName, key: 'password' } } } };
    // One script prints the value and returns it (both redacted); one only uses it.
    await f.createRole('loud', {
      jig: 'script',
      template,
      script: {
        inline:
          '#!/bin/sh\nset -eu\npw=$(jq -r .db.password "$CROWBAR_INPUT")\necho "using $pw"\njq -n --arg p "$pw" \'{db: {echo: $p}}\' > "$CROWBAR_OUTPUT"\n',
      },
    });
    await f.createRole('quiet', {
      jig: 'script',
      template,
      script: {
        inline:
          '#!/bin/sh\nset -eu\npw=$(jq -r .db.password "$CROWBAR_INPUT")\njq -n --arg l "${#pw}" \'{db: {length: $l}}\' > "$CROWBAR_OUTPUT"\n',
      },
    });
    const loud = await f.waitState(await f.bind('loud', 'n1', dep), 'active');
    const quiet = await f.waitState(await f.bind('quiet', 'n1', dep), 'active');
    // The script got the value; the status holds the reference, and [secret] where it came back.
    expect(quiet.status?.wall).toEqual({ db: { length: String(value.length) } });
    for (const nr of [loud, quiet]) {
      expect(nr.status?.run?.input?.['db']).toEqual(template.db);
      expect(JSON.stringify(nr.status)).not.toContain(value);
    }
    expect(loud.status?.wall).toEqual({ db: { echo: '[secret]' } });
    expect(loud.status?.run?.logTail).toContain('using [secret]');
    const events = await core.listNamespacedEvent({ namespace: NS });
    expect(JSON.stringify(events.items)).not.toContain(value);
    expect(readFileSync(op?.log ?? '', 'utf8')).not.toContain(value);
    // Nothing the quiet run left on the node (its journal, any run directory) holds the value.
    const dirs = [
      ...JOURNAL_DIRS.map((d) => join(d, quiet.metadata.name ?? '')),
      ...readdirSync('/tmp')
        .filter((d) => d.startsWith('crowbar-jig.'))
        .map((d) => join('/tmp', d)),
    ];
    const files: string[] = [];
    const walk = (d: string): void => {
      let names: string[] = [];
      try {
        names = readdirSync(d);
      } catch {
        return;
      }
      for (const n of names) {
        const p = join(d, n);
        if (statSync(p, { throwIfNoEntry: false })?.isDirectory()) walk(p);
        else files.push(p);
      }
    };
    for (const d of dirs) walk(d);
    expect(files.length).toBeGreaterThan(0); // the journal entry is there
    for (const file of files) {
      let text = '';
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        continue; // gone meanwhile, or a lock
      }
      expect({ file, leaks: text.includes(value) }).toEqual({ file, leaks: false });
    }
    await core.deleteNamespacedSecret({ name: secretName, namespace: NS }).catch(() => undefined);
    for (const r of ['loud', 'quiet']) await client.delete('NodeRole', f.nr(r, 'n1'));
  });

  it('turns a node whose sshd stopped dead, ripples its noderoles, and recovers it', async () => {
    await createNode('n3');
    await waitAlive('n3', true);
    await f.bind('report', 'n3', dep);
    await f.waitState(f.nr('report', 'n3'), 'active');
    const sshd = machines.sshd('n3');
    await sshd.stop();
    await forceCheck('n3');
    const dead = await waitAlive('n3', false, /SshFailed/);
    expect(aliveCond(dead)?.message).toMatch(/connection refused: is sshd running\?/);
    await f.waitState(f.nr('facts', 'n3'), 'todo');
    await f.waitState(f.nr('report', 'n3'), 'blocked');
    await sshd.start();
    await waitAlive('n3', true, /Reachable/);
    const again = await f.waitState(f.nr('report', 'n3'), 'active');
    expect(again.status?.runCount).toBe(2);
  });

  it('refuses a changed host key until status.sshHostKey is cleared', async () => {
    const sshd = machines.sshd('n3');
    const before = (await node('n3')).status?.sshHostKey;
    expect(before).toBe(sshd.hostKey.fingerprint);
    const fresh = await sshd.rotateHostKey();
    await forceCheck('n3');
    const refused = await waitAlive('n3', false, /HostKeyChanged/);
    expect(aliveCond(refused)?.message).toContain(
      `host key of ${f.node('n3')} changed (was ${before}, now ${fresh}): if the node was reinstalled, clear status.sshHostKey`,
    );
    await f.waitState(f.nr('facts', 'n3'), 'todo');
    // Still refused a while later: nothing trusts the new key on its own.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await node('n3')).status?.alive).toBe(false);
    await client.mergePatchStatus('Node', f.node('n3'), { status: { sshHostKey: null } }, FM);
    const ok = await waitAlive('n3', true, /Reachable/);
    expect(ok.status?.sshHostKey).toBe(fresh);
    await f.waitState(f.nr('report', 'n3'), 'active');
  });

  it('reports unreachable addresses and refused auth on the Node, never a stuck noderole', async () => {
    await createNode('gone', machines.lab.unusedAddress());
    await waitAlive('gone', false, /NoPing/);
    await createNode('n4');
    const refused = await waitAlive('n4', false, /AuthRefused/);
    expect(aliveCond(refused)?.message).toMatch(/refused authentication as root/);
    // Force a run at the unreachable node: it ends (error or back to todo), never stays running.
    await f.setAlive('gone', true);
    const nr = await f.bind('echo', 'gone', dep);
    const end = await eventually(
      'the noderole settled: error, or todo on a dead node',
      async () => {
        const got = await client.get('NodeRole', nr);
        const s = got?.status?.state;
        if (s === 'error') return got;
        return s === 'todo' && (await node('gone')).status?.alive === false ? got : undefined;
      },
      40_000,
      200,
    );
    expect(['error', 'todo']).toContain(end.status?.state);
    await waitAlive('gone', false);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await client.get('NodeRole', nr))?.status?.state).not.toBe('transition');
  });
});

describe('node self-report API', () => {
  const post = async (path: string, token?: string, body?: string, method = 'POST') =>
    fetch(`http://127.0.0.1:${apiPort}${path}`, {
      method,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      ...(body === undefined ? {} : { body }),
    });

  it('flips alive with the node token and refuses anything else', async () => {
    const name = await createNode('self'); // no addresses: it reports itself
    const secret = await eventually('the token Secret', async () =>
      core
        .readNamespacedSecret({ name: tokenSecretName(name), namespace: NS })
        .catch(() => undefined),
    );
    expect(secret.metadata?.annotations?.['crowbar.dev/node']).toBe(name);
    expect(secret.metadata?.ownerReferences?.[0]?.name).toBe(name);
    // The node's `alive` token, derived from its secret (which is never handed out itself).
    const token = purposeToken(
      Buffer.from(secret.data?.['token'] ?? '', 'base64').toString('utf8'),
      'alive',
    );
    expect(token.length).toBeGreaterThan(20);

    const path = `/api/v1/nodes/${name}/alive`;
    expect((await post(path)).status).toBe(401);
    expect((await post(path, `${token}x`)).status).toBe(401);
    // Authentication before lookup: an unknown node is refused as a wrong token is (no 404).
    expect((await post(`/api/v1/nodes/nope-${id}.example.com/alive`, token)).status).toBe(401);
    expect((await post(`/api/v1/nodes/${name}/reboot`, token)).status).toBe(404);
    expect((await post(path, token, undefined, 'GET')).status).toBe(405);
    expect((await post(path, token, 'x'.repeat(10_000))).status).toBe(413);
    expect((await post(path, token, '[1]')).status).toBe(400);
    expect((await node('self')).status?.alive).toBeUndefined();

    const ok = await post(path, token, JSON.stringify({ message: 'booted' }));
    expect(ok.status).toBe(200);
    const n = await waitAlive('self', true, /SelfReported/);
    expect(aliveCond(n)?.message).toBe('the node reported itself alive: booted');
    expect((await post(`/api/v1/nodes/${name}/dead`, token)).status).toBe(200);
    await waitAlive('self', false, /SelfReported/);
  });
});
