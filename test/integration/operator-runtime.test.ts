/**
 * The operator process against the real API server: caches sync before it reports ready, it
 * creates the system deployment, exactly one replica leads, and SIGTERM stops it cleanly.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { eventually, testClient, uid } from '../harness/context.ts';
import { metricValue, startOperator, type OperatorProc } from '../harness/operator.ts';
import { freePort } from '../harness/process.ts';

const kubeconfig = inject('kubeconfig');
const logDir = inject('cpDir');
const client = testClient();
const running: OperatorProc[] = [];

afterEach(async () => {
  for (const p of running.splice(0)) await p.stop();
});

async function operator(identity: string, args: string[] = []): Promise<OperatorProc> {
  const p = await startOperator({
    kubeconfig,
    logDir,
    identity,
    args: [`--lease-name=lease-${identity.split('-')[0] ?? 'x'}`, ...args],
  });
  running.push(p);
  return p;
}

describe('operator runtime', () => {
  it('reports ready only after its caches sync, and creates the system deployment', async () => {
    const id = uid();
    const op = await operator(`${id}-a`);
    await eventually('readyz 200', async () => (await op.http('/readyz')).status === 200);
    const dep = await eventually('system deployment', () => client.get('Deployment', 'system'));
    expect(dep.spec.state).toBe('committed');
    const metrics = (await op.http('/metrics')).body;
    expect(metrics).toMatch(/crowbar_informer_synced\{kind="NodeRole"\} 1/);
  });

  it('is not ready while its caches cannot sync', async () => {
    // A kubeconfig pointing at a closed loopback port: the caches never sync.
    const port = await freePort();
    const bad = join(logDir, `bad-kubeconfig-${uid()}`);
    writeFileSync(
      bad,
      `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n`,
    );
    const op = await startOperator({ kubeconfig: bad, logDir, identity: `nosync-${uid()}` });
    running.push(op);
    const checks: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await op.http('/readyz');
      checks.push(r.status);
      expect(r.body).toMatch(/informer .* synced/);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(checks.every((s) => s === 503)).toBe(true);
    expect((await op.http('/healthz')).status).toBe(200);
  });

  it('lets exactly one of two replicas lead, and fails over when the leader stops', async () => {
    const id = uid();
    const a = await operator(`${id}-a`);
    const b = await operator(`${id}-b`);
    const leaderOf = async (p: OperatorProc) =>
      metricValue((await p.http('/metrics')).body, 'crowbar_leader');
    const first = await eventually('one leader', async () => {
      const [la, lb] = [await leaderOf(a), await leaderOf(b)];
      return la === 1 || lb === 1 ? { la, lb } : undefined;
    });
    // Sample for a while: never both.
    for (let i = 0; i < 10; i++) {
      const [la, lb] = [await leaderOf(a), await leaderOf(b)];
      expect((la ?? 0) + (lb ?? 0)).toBeLessThanOrEqual(1);
      await new Promise((r) => setTimeout(r, 100));
    }
    const [leader, standby] = first.la === 1 ? [a, b] : [b, a];
    await leader.stop();
    expect(leader.proc.exitCode).toBe(0);
    await eventually('standby takes over', async () => (await leaderOf(standby)) === 1, 20_000);
  });
});
