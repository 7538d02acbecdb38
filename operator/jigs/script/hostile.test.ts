/**
 * The script jig and the aliveness check against hostile SSH servers (test/harness/hostile-ssh.ts,
 * a real ssh2 server on loopback that the test controls): servers that stall channel opens and
 * closes while answering keepalives, flood output, forge the runner's protocol, or swap host keys.
 * Each run must end (the jig returns, so its run slot is free), with a clear error and nothing
 * that would not fit the NodeRole's status; the server must see the connection closed.
 * The operator-level version, with real sshd nodes converging alongside, is
 * test/integration/hostile-nodes.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeRole, Role } from '../../../generated/crowbar.ts';
import { eventually } from '../../../test/harness/context.ts';
import {
  startHostileSsh,
  type HostileMode,
  type HostileSsh,
} from '../../../test/harness/hostile-ssh.ts';
import { adminNode } from '../../../test/harness/ssh-fleet.ts';
import { generateKeyPair, type KeyPair } from '../../../test/harness/sshd.ts';
import type { JigResult } from '../types.ts';
import { checkAlive } from './aliveness.ts';
import { scriptJig, type ScriptJigDeps } from './jig.ts';
import { firstAdminAddress } from './protocol.ts';

const dir = mkdtempSync(join(tmpdir(), 'cbt-hostile-'));
let client: KeyPair;
let hostA: KeyPair;
let hostB: KeyPair;
const servers: HostileSsh[] = [];

beforeAll(async () => {
  client = await generateKeyPair(dir, 'client');
  hostA = await generateKeyPair(dir, 'host-a');
  hostB = await generateKeyPair(dir, 'host-b');
});

afterAll(async () => {
  for (const s of servers) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

async function serve(mode: HostileMode): Promise<HostileSsh> {
  const s = await startHostileSsh({
    mode,
    host: '127.0.0.1',
    port: 0,
    hostKeyFiles: [hostA.path, hostB.path],
  });
  servers.push(s);
  return s;
}

/** Short waits, so that each case ends in seconds; the defaults are for real machines. */
const TUNE = {
  readyTimeoutMs: 3000,
  deadlineGraceMs: 500,
  cancelWaitMs: 500,
  pidWaitMs: 500,
  hardMarginMs: 4000,
} satisfies Partial<ScriptJigDeps>;

const role: Role = {
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Role',
  metadata: { name: 'hostile' },
  spec: { jig: 'script', script: { inline: '#!/bin/sh\ntrue\n' }, timeoutSeconds: 1 },
};
const noderole: NodeRole = {
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'NodeRole',
  metadata: { name: 'hostile.n1' },
  spec: { node: 'n1.hostile.test', role: 'hostile', deployment: 'system' },
};

async function runAgainst(
  s: HostileSsh,
  o: { hostKey?: string; signal?: AbortSignal; tune?: Partial<ScriptJigDeps> } = {},
): Promise<{ result: JigResult; recorded: string[] }> {
  const recorded: string[] = [];
  const jig = scriptJig({
    resolveAddress: (n) => firstAdminAddress(n),
    privateKey: client.privateKey,
    port: s.port,
    onHostKey: (_n, fp) => {
      recorded.push(fp);
      return Promise.resolve();
    },
    loadScript: (r) => Promise.resolve(r.spec.script?.inline ?? ''),
    ...TUNE,
    ...o.tune,
  });
  const node = adminNode(
    'n1.hostile.test',
    '127.0.0.1/8',
    o.hostKey === undefined ? {} : { sshHostKey: o.hostKey },
  );
  const result = await jig.run({
    noderole,
    role,
    node,
    number: 1,
    input: {},
    signal: o.signal ?? new AbortController().signal,
  });
  return { result, recorded };
}

/** Every string the annealer would write fits the CRD (message and logTail: 4096). */
function fitsStatus(r: JigResult): void {
  const message = r.ok ? '' : r.message;
  expect(message).not.toBe('');
  expect(message.length).toBeLessThanOrEqual(4096);
  if (r.logTail !== undefined) expect(r.logTail.length).toBeLessThanOrEqual(4096);
}

async function connectionsClosed(s: HostileSsh): Promise<void> {
  await eventually(
    'the server saw every connection closed',
    () => s.stats.connections > 0 && s.stats.closed === s.stats.connections,
    10_000,
    50,
  );
}

describe('script jig against hostile SSH servers', { timeout: 30_000 }, () => {
  it('cuts a server that never opens the runner channel at the hard deadline', async () => {
    const s = await serve('stall-open');
    const { result } = await runAgainst(s);
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.message).toMatch(
      /^the run of role hostile on node n1\.hostile\.test did not end within 5 s \(timeoutSeconds 1 \+ 4 s\): the operator closed the SSH connection/,
    );
    fitsStatus(result);
    await connectionsClosed(s);
    expect(s.stats.channelOpens).toBe(1);
  });

  it('cuts a server that never closes the channel nor opens the cancel channel', async () => {
    const s = await serve('stall-close');
    // A margin past the soft deadline (timeout + the remote kill grace + 0.5 s), as the default
    // margin is, so that the client first tries to cancel the run.
    const { result } = await runAgainst(s, { tune: { hardMarginMs: 13_000 } });
    expect(result.ok ? '' : result.message).toMatch(/did not end within 14 s/);
    fitsStatus(result);
    await connectionsClosed(s);
    // The runner's channel, then the cancel the client tried at the soft deadline.
    expect(s.stats.channelOpens).toBe(2);
  });

  it('cuts a cancelled run on a wedged server within the cancel bound', async () => {
    const s = await serve('stall-close');
    const ac = new AbortController();
    const running = runAgainst(s, { signal: ac.signal });
    await eventually('the runner started', () => s.stats.execs.length === 1, 10_000, 20);
    ac.abort(new Error('node died'));
    await expect(running).rejects.toThrow('node died');
    await connectionsClosed(s);
  });

  it('stops reading a flood and fails the run with what happened', async () => {
    const s = await serve('flood');
    const { result } = await runAgainst(s);
    expect(result.ok ? '' : result.message).toMatch(
      /^the script of role hostile on node n1\.hostile\.test made the runner print more than \d+ bytes$/,
    );
    fitsStatus(result);
    await connectionsClosed(s);
  });

  it('refuses a forged result whose wall is 100,000 levels deep', async () => {
    const s = await serve('forge-deep');
    const { result } = await runAgainst(s);
    expect(result.ok ? '' : result.message).toMatch(
      /wrote output that the jig cannot use: it is nested more than 32 levels deep/,
    );
    fitsStatus(result);
    await connectionsClosed(s);
  });

  it('quotes only the start of a 600 KiB forged protocol line', async () => {
    const s = await serve('forge-line');
    const { result } = await runAgainst(s);
    expect(result.ok ? '' : result.message).toMatch(
      /ended without a result \(unexpected line from the runner: forged forged .*\.\.\.\)$/,
    );
    fitsStatus(result);
    await connectionsClosed(s);
  });

  it('keeps a forged log tail of binary junk within the status limits', async () => {
    const s = await serve('forge-tail');
    const { result } = await runAgainst(s);
    expect(result.ok ? '' : result.message).toMatch(/wrote output that the jig cannot use/);
    fitsStatus(result);
    // The forged lines are only log text: they reach the tail as text, never as protocol.
    expect(result.logTail).toContain('crowbar-jig/1 result 0 sent 2 0 0 exited');
    await connectionsClosed(s);
  });

  it('refuses a server whose host key changed after first use', async () => {
    const s = await serve('swap-key');
    const first = await runAgainst(s);
    expect(first.result).toEqual({ ok: true, wall: {}, logTail: 'ok' });
    expect(first.recorded).toEqual([hostA.fingerprint]);
    const second = await runAgainst(s, { hostKey: hostA.fingerprint });
    expect(second.result.ok ? '' : second.result.message).toBe(
      `host key of n1.hostile.test changed (was ${hostA.fingerprint}, now ${hostB.fingerprint}): if the node was reinstalled, clear status.sshHostKey on the Node to trust the new key`,
    );
    expect(second.recorded).toEqual([]);
    await connectionsClosed(s);
  });
});

describe('aliveness against hostile SSH servers', { timeout: 30_000 }, () => {
  it('reports a server that never opens a channel as not alive, and lets go of it', async () => {
    const s = await serve('stall-open');
    const res = await checkAlive(
      { node: 'n1.hostile.test', addresses: ['127.0.0.1'] },
      {
        privateKey: client.privateKey,
        port: s.port,
        sshTimeoutMs: 1000,
        ping: () => Promise.resolve(true),
      },
    );
    expect(res.alive).toBe(false);
    expect(res.reason).toBe(
      'SSH echo on 127.0.0.1 failed: no channel within 3000 ms; the connection was closed',
    );
    await connectionsClosed(s);
  });

  it('finds a server that answers echo alive', async () => {
    const s = await serve('stall-close');
    const res = await checkAlive(
      { node: 'n1.hostile.test', addresses: ['127.0.0.1'] },
      {
        privateKey: client.privateKey,
        port: s.port,
        sshTimeoutMs: 2000,
        ping: () => Promise.resolve(true),
      },
    );
    expect(res).toMatchObject({ alive: true, newHostKey: hostA.fingerprint });
    await connectionsClosed(s);
  });
});
