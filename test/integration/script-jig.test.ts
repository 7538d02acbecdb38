/**
 * The script jig and aliveness against real OpenSSH servers: each "node" is an sshd in its own
 * network namespace on a lab bridge that this file creates and removes. Traffic goes only to the
 * lab's own 10.251.S.0/24 addresses.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node, NodeRole, Role } from '../../generated/crowbar.ts';
import { checkAlive } from '../../operator/jigs/script/aliveness.ts';
import { scriptJig, type ScriptJigDeps } from '../../operator/jigs/script/jig.ts';
import { firstAdminAddress } from '../../operator/jigs/script/protocol.ts';
import { SessionPool } from '../../operator/jigs/script/session-pool.ts';
import type { JigResult } from '../../operator/jigs/types.ts';
import { eventually } from '../harness/context.ts';
import { nsExec, reapStaleLabs, run, type LabNode } from '../harness/netns.ts';
import { adminNode, SshFleet } from '../harness/ssh-fleet.ts';
import type { KeyPair, Sshd } from '../harness/sshd.ts';

const id = randomBytes(3).toString('hex');
const machines = new SshFleet({ prefix: `cbt-jig-${id}`, noderoleTag: id });
const dir = machines.dir;
let key: KeyPair;
let wrongKey: KeyPair;
/** What onHostKey recorded, as the Node status would hold it. */
const recorded = new Map<string, string>();

beforeAll(async () => {
  key = await machines.generateKey('client');
  wrongKey = await machines.generateKey('intruder');
  await machines.start(['n1', 'n2', 'n3', 'n4'], { authorizedKeys: () => [key.publicKey] });
});

afterAll(() => machines.destroy());

const ln = (n: string): LabNode => machines.node(n);
const sshd = (n: string): Sshd => machines.sshd(n);
const fqdn = (n: string): string => `${n}.${id}.lab.test`;

function nodeObj(n: string, hostKey?: string): Node {
  const address = n === 'nowhere' ? machines.lab.unusedAddress() : ln(n).address;
  return adminNode(fqdn(n), `${address}/24`, hostKey === undefined ? {} : { sshHostKey: hostKey });
}

function roleObj(name: string, script: string, timeoutSeconds?: number): Role {
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Role',
    metadata: { name },
    spec: {
      jig: 'script',
      script: { inline: script },
      ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }),
    },
  };
}

function noderoleObj(n: string, role: string): NodeRole {
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'NodeRole',
    metadata: { name: `${n}-${role}-${id}` },
    spec: { node: fqdn(n), role, deployment: 'system' },
  };
}

function jigWith(patch: Partial<ScriptJigDeps> = {}): ReturnType<typeof scriptJig> {
  return scriptJig({
    resolveAddress: (node) => firstAdminAddress(node),
    privateKey: key.privateKey,
    onHostKey: (node, fp) => {
      recorded.set(node.metadata.name ?? '', fp);
      return Promise.resolve();
    },
    loadScript: (role) => Promise.resolve(role.spec.script?.inline ?? ''),
    readyTimeoutMs: 5000,
    ...patch,
  });
}

interface RunOpts {
  input?: Record<string, unknown>;
  hostKey?: string;
  signal?: AbortSignal;
  jig?: ReturnType<typeof scriptJig>;
}

function runOn(n: string, role: Role, o: RunOpts = {}): Promise<JigResult> {
  return (o.jig ?? jigWith()).run({
    noderole: noderoleObj(n, role.metadata.name ?? ''),
    role,
    node: nodeObj(n, o.hostKey ?? recorded.get(fqdn(n))),
    number: 1,
    input: o.input ?? {},
    signal: o.signal ?? new AbortController().signal,
  });
}

/** Gone: no such process, or a zombie waiting for init to reap it. */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

const msg = (r: JigResult): string => (r.ok ? '' : r.message);

describe('script jig over SSH', () => {
  it('runs a script with the input and returns its output as the wall; records the host key on first use', async () => {
    recorded.delete(fqdn('n1'));
    const role = roleObj(
      'echo-data',
      `#!/bin/sh
set -e
echo "running $CROWBAR_ROLE on $CROWBAR_NODE"
jq -c '{got: .db, role: env.CROWBAR_ROLE, node: env.CROWBAR_NODE, kernel: "linux"}' "$CROWBAR_INPUT" > "$CROWBAR_OUTPUT"
`,
    );
    const r = await runOn('n1', role, { input: { db: { port: 5432, hosts: ['a', 'b'] } } });
    expect(r).toEqual({
      ok: true,
      wall: {
        got: { port: 5432, hosts: ['a', 'b'] },
        role: 'echo-data',
        node: fqdn('n1'),
        kernel: 'linux',
      },
      logTail: `running echo-data on ${fqdn('n1')}`,
    });
    // TOFU: the fingerprint recorded is OpenSSH's own for the node's host key.
    expect(recorded.get(fqdn('n1'))).toBe(sshd('n1').hostKey.fingerprint);
    // A second run with the recorded key is accepted and records nothing new.
    const before = recorded.get(fqdn('n1'));
    recorded.delete(fqdn('n1'));
    const again = await runOn('n1', role, { hostKey: before!, input: { db: 1 } });
    expect(again.ok).toBe(true);
    expect(recorded.has(fqdn('n1'))).toBe(false);
    recorded.set(fqdn('n1'), before!);
  });

  it('a failing script errors with its exit status and the tail of its output', async () => {
    const role = roleObj(
      'fails',
      '#!/bin/bash\nfor i in $(seq 1 500); do echo "step $i"; done\necho "disk full" >&2\nexit 4\n',
    );
    const r = await runOn('n1', role);
    expect(r.ok).toBe(false);
    expect(msg(r)).toBe(`script of role fails on node ${fqdn('n1')} exited with status 4`);
    expect(!r.ok && r.exitCode).toBe(4);
    expect(r.logTail?.endsWith('step 500\ndisk full')).toBe(true);
    expect(Buffer.byteLength(r.logTail ?? '')).toBeLessThanOrEqual(4096);
  });

  it('a run past the role timeout errors and its remote processes are gone', async () => {
    const pidFile = join(dir, `timeout-${id}.pids`);
    const role = roleObj(
      'hangs',
      `#!/bin/sh\nsleep 600 &\necho $! > ${pidFile}\necho $$ >> ${pidFile}\necho "waiting forever"\nwait\n`,
      2,
    );
    const t0 = Date.now();
    const r = await runOn('n2', role);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(msg(r)).toBe(
      `script of role hangs on node ${fqdn('n2')} timed out after 2 s and was killed`,
    );
    expect(r.logTail).toBe('waiting forever');
    const pids = readFileSync(pidFile, 'utf8').trim().split('\n').map(Number);
    expect(pids).toHaveLength(2);
    await eventually('remote script and child gone', () => pids.every(processGone), 10_000);
  });

  it('delivers hostile values verbatim and executes none of them', async () => {
    const marker = `/tmp/pwned-${id}`;
    const hostile = [
      `$(touch ${marker})`,
      `\`touch ${marker}\``,
      `'; touch ${marker}; '`,
      `"; touch ${marker}; "`,
      `\ntouch ${marker}\n`,
      `$HOME \\ | & ; < > * ? [ ] { } ~ !`,
      'unicode ✓ and a NUL-free \t tab',
    ].join(' ');
    const role = roleObj(
      'echo-back',
      `#!/bin/sh\njq -c '{v: .v, key: (.nested | keys[0]), k: (.nested | to_entries[0].value)}' "$CROWBAR_INPUT" > "$CROWBAR_OUTPUT"\n`,
    );
    const key = `$(touch ${marker})`;
    const r = await runOn('n1', role, { input: { v: hostile, nested: { [key]: hostile } } });
    expect(r).toEqual({ ok: true, wall: { v: hostile, key, k: hostile } });
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses a changed host key with a message that says how to trust the new key', async () => {
    const role = roleObj('marks', `#!/bin/sh\ntouch ${join(dir, `ran-${id}`)}\n`);
    const first = await runOn('n3', role);
    expect(first.ok).toBe(true);
    const old = recorded.get(fqdn('n3'))!;
    expect(old).toBe(sshd('n3').hostKey.fingerprint);
    rmSync(join(dir, `ran-${id}`));

    const now = await sshd('n3').rotateHostKey();
    expect(now).not.toBe(old);
    const r = await runOn('n3', role, { hostKey: old });
    expect(msg(r)).toBe(
      `host key of ${fqdn('n3')} changed (was ${old}, now ${now}): if the node was reinstalled, clear status.sshHostKey on the Node to trust the new key`,
    );
    expect(existsSync(join(dir, `ran-${id}`))).toBe(false);

    // The admin clears status.sshHostKey: the next run trusts and records the new key.
    recorded.delete(fqdn('n3'));
    const cleared = await runOn('n3', role, { hostKey: '' });
    expect(cleared.ok).toBe(true);
    expect(recorded.get(fqdn('n3'))).toBe(now);
  });

  it('a key the node does not authorize is refused', async () => {
    const r = await runOn('n1', roleObj('any', '#!/bin/sh\ntrue\n'), {
      jig: jigWith({ privateKey: wrongKey.privateKey }),
    });
    expect(msg(r)).toBe(
      `${fqdn('n1')} (${ln('n1').address}:22) refused authentication as root with the configured key: check root's authorized_keys on the node`,
    );
  });

  it('a node without an admin address, or an unreachable one, is a clear error', async () => {
    const role = roleObj('any', '#!/bin/sh\ntrue\n');
    const none = await runOn('n1', role, { jig: jigWith({ resolveAddress: () => undefined }) });
    expect(msg(none)).toBe(
      `node ${fqdn('n1')} has no admin address in status.addresses: the script jig cannot reach it over SSH`,
    );
    const r = await runOn('nowhere', role, { jig: jigWith({ readyTimeoutMs: 3000 }) });
    expect(r.ok).toBe(false);
    expect(msg(r)).toMatch(
      new RegExp(
        `^(cannot reach|timed out connecting to) ${fqdn('nowhere').replace(/\./g, '\\.')} \\(${machines.lab.unusedAddress().replace(/\./g, '\\.')}:22\\)`,
      ),
    );
  });

  it('refuses a script over 256 KiB and output that is not a JSON object', async () => {
    const bigScript = `#!/bin/sh\n#${'x'.repeat(256 * 1024)}\n`;
    const big = await runOn('n1', roleObj('big', bigScript));
    expect(msg(big)).toBe(
      `the script of role big is ${Buffer.byteLength(bigScript)} bytes, over the 256 KiB limit`,
    );
    const arr = await runOn('n1', roleObj('arr', '#!/bin/sh\necho "[1]" > "$CROWBAR_OUTPUT"\n'));
    expect(msg(arr)).toContain('wrote output that the jig cannot use: it is an array');
    const bad = await runOn('n1', roleObj('bad', '#!/bin/sh\necho "{oops" > "$CROWBAR_OUTPUT"\n'));
    expect(msg(bad)).toContain('it is not valid JSON');
    const huge = await runOn(
      'n1',
      roleObj('huge', '#!/bin/sh\nhead -c 2000000 /dev/zero > "$CROWBAR_OUTPUT"\n'),
    );
    expect(msg(huge)).toContain('wrote 2000000 bytes to $CROWBAR_OUTPUT, over the 1 MiB limit');
  });

  it('a second concurrent run of the same noderole on a node fails fast on the lock', async () => {
    const started = join(dir, `lock-started-${id}`);
    const role = roleObj(
      'slow',
      `#!/bin/sh\ntouch ${started}\nsleep 3\necho '{"done":true}' > "$CROWBAR_OUTPUT"\n`,
    );
    const first = runOn('n4', role);
    await eventually('first run started', () => existsSync(started), 20_000, 50);
    const t0 = Date.now();
    const second = await runOn('n4', role);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(msg(second)).toMatch(
      new RegExp(
        `^another run of noderole n4-slow-${id} is in progress on node ${fqdn('n4').replace(/\./g, '\\.')} \\(`,
      ),
    );
    expect(await first).toEqual({ ok: true, wall: { done: true } });
    // The lock is released with the run: a third run goes through.
    const third = await runOn('n4', roleObj('slow', '#!/bin/sh\ntrue\n'));
    expect(third.ok).toBe(true);
  });

  it('a cancelled run stops the remote script and rejects with the reason', async () => {
    const pidFile = join(dir, `cancel-${id}.pid`);
    const role = roleObj('cancel-me', `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 600\n`, 600);
    const ac = new AbortController();
    const p = runOn('n2', role, { signal: ac.signal });
    await eventually('script started', () => existsSync(pidFile), 20_000, 50);
    ac.abort(new Error('node died'));
    await expect(p).rejects.toThrow('node died');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await eventually('cancelled script gone', () => processGone(pid), 15_000);
  });
});

describe('kept connections (session-pool.ts)', () => {
  // The script reports which TCP connection it came over: the client's port in SSH_CONNECTION.
  const portRole = roleObj(
    'which-conn',
    '#!/bin/sh\njq -n --arg c "$SSH_CONNECTION" \'{conn: $c}\' > "$CROWBAR_OUTPUT"\n',
  );
  const clientPort = (r: JigResult): string => {
    expect(r.ok, msg(r)).toBe(true);
    const conn = r.ok ? String(r.wall['conn']) : '';
    expect(conn).toMatch(/^\S+ \d+ \S+ 22$/);
    return conn.split(' ')[1] ?? '';
  };
  /** The sshd processes holding the node's end of the connection from `port`. */
  async function sshdPids(n: string, port: string): Promise<number[]> {
    const out = await nsExec(ln(n).ns, 'ss', ['-tnpH', 'state', 'established', '( sport = :22 )']);
    const line = out.stdout.split('\n').find((l) => l.includes(`:${port} `));
    return [...(line ?? '').matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
  }

  it("a node's next run reuses the last run's connection; a failed run's connection is not kept", async () => {
    const sessions = new SessionPool();
    const jig = jigWith({ sessions });
    try {
      const first = clientPort(await runOn('n3', portRole, { jig }));
      expect(sessions.size).toBe(1);
      const second = clientPort(await runOn('n3', portRole, { jig }));
      expect(second).toBe(first);
      expect(sessions.reused).toBe(1);
      const failed = await runOn('n3', roleObj('fails', '#!/bin/sh\nexit 3\n'), { jig });
      expect(failed.ok).toBe(false);
      expect(sessions.size).toBe(0);
      const third = clientPort(await runOn('n3', portRole, { jig }));
      expect(third).not.toBe(first);
    } finally {
      sessions.close();
    }
  });

  it('a kept connection whose node went away connects anew: closed, or silent', async () => {
    const sessions = new SessionPool();
    const jig = jigWith({ sessions, reuseOpenTimeoutMs: 1000 });
    const stopped: number[] = [];
    try {
      // Closed by the node (its sshd for that connection killed): the pool drops it.
      const a = clientPort(await runOn('n1', portRole, { jig }));
      const pidsA = await sshdPids('n1', a);
      expect(pidsA.length).toBeGreaterThan(0);
      for (const pid of pidsA) process.kill(pid, 'SIGKILL');
      await eventually('the pool saw the connection close', () => sessions.size === 0, 10_000, 50);
      const b = clientPort(await runOn('n1', portRole, { jig }));
      expect(b).not.toBe(a);
      // Silent (stopped, as a machine powered off holds the socket without resetting it): the
      // channel does not open within reuseOpenTimeoutMs, and the run goes over a new connection.
      const pidsB = await sshdPids('n1', b);
      expect(pidsB.length).toBeGreaterThan(0);
      for (const pid of pidsB) {
        process.kill(pid, 'SIGSTOP');
        stopped.push(pid);
      }
      expect(sessions.size).toBe(1);
      const c = clientPort(await runOn('n1', portRole, { jig }));
      expect(c).not.toBe(b);
      expect(sessions.reused).toBe(1);
    } finally {
      sessions.close();
      for (const pid of stopped) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
    }
  });
});

describe('aliveness (§10.1)', () => {
  it('ping and SSH echo: stopped sshd → not alive, restarted → alive', async () => {
    const target = {
      node: fqdn('n2'),
      addresses: [ln('n2').address],
      expectedHostKey: sshd('n2').hostKey.fingerprint,
    };
    const o = { privateKey: key.privateKey, sshTimeoutMs: 5000 };
    expect(await checkAlive(target, o)).toEqual({
      alive: true,
      address: ln('n2').address,
      reason: `${ln('n2').address} answers ping and SSH`,
    });
    await sshd('n2').stop();
    try {
      const dead = await checkAlive(target, o);
      expect(dead.alive).toBe(false);
      expect(dead.reason).toContain(`${ln('n2').address} answers ping but SSH fails`);
      expect(dead.reason).toContain('connection refused: is sshd running?');
    } finally {
      await sshd('n2').start();
    }
    const back = await eventually(
      'node alive again',
      async () => {
        const a = await checkAlive(target, o);
        return a.alive ? a : undefined;
      },
      15_000,
      200,
    );
    expect(back.alive).toBe(true);
  });

  it('an address that does not answer ping is not alive; the next admin address is tried', async () => {
    const o = { privateKey: key.privateKey, sshTimeoutMs: 5000 };
    const nowhere = machines.lab.unusedAddress();
    const dead = await checkAlive({ node: 'x', addresses: [nowhere] }, o);
    expect(dead).toEqual({
      alive: false,
      reason: `no admin address of node x answers ping (tried ${nowhere})`,
    });
    const second = await checkAlive(
      { node: fqdn('n1'), addresses: [nowhere, ln('n1').address] },
      o,
    );
    expect(second).toMatchObject({ alive: true, address: ln('n1').address });
    expect(second.newHostKey).toBe(sshd('n1').hostKey.fingerprint);
  });

  it('a wrong key or a changed host key is not alive, with the reason', async () => {
    const target = { node: fqdn('n1'), addresses: [ln('n1').address] };
    const wrong = await checkAlive(target, { privateKey: wrongKey.privateKey });
    expect(wrong.alive).toBe(false);
    expect(wrong.reason).toContain('refused authentication as root');
    const changed = await checkAlive(
      { ...target, expectedHostKey: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' },
      { privateKey: key.privateKey },
    );
    expect(changed.alive).toBe(false);
    expect(changed.reason).toContain(`host key of ${fqdn('n1')} changed`);
  });
});

describe('lab harness', () => {
  it('reaps namespaces of a lab whose runner died', async () => {
    const ns = `cbt-${id}-stale`;
    const dead = spawnSync('true').pid; // a pid that has exited
    await run('ip', ['netns', 'add', ns]);
    try {
      mkdirSync('/run/crowbar-test-labs', { recursive: true });
      writeFileSync(
        `/run/crowbar-test-labs/cbt-${id}.json`,
        JSON.stringify({ pid: dead, namespaces: [ns] }),
      );
      expect(await reapStaleLabs()).toContain(`cbt-${id}`);
      const { stdout } = await run('ip', ['netns', 'list']);
      expect(stdout.split('\n').some((l) => l.split(' ')[0] === ns)).toBe(false);
      // The live lab of this file is left alone.
      expect(stdout).toContain(machines.lab.hubNs);
    } finally {
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      rmSync(`/run/crowbar-test-labs/cbt-${id}.json`, { force: true });
    }
  });
});
