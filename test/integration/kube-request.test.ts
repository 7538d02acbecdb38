/**
 * The lean request path (operator/kube/request.ts, ADR 0031) against the real API server: it
 * answers what client-node's generated methods answer, throws the same ApiException for the
 * answers every caller tells apart (404, 409, 422, 401), authenticates as the KubeConfig says (a
 * client certificate here; a ServiceAccount token read from a file, as in a cluster), and the
 * Event recorder's POST through it makes an Event `kubectl get events` shows.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { GROUP, PLURALS, VERSION, type NodeRole } from '../../generated/crowbar.ts';
import { EventRecorder } from '../../operator/events.ts';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { apiCode, apiMessage, isConflict, isNotFound } from '../../operator/kube/errors.ts';
import { kubeRequest } from '../../operator/kube/request.ts';
import { eventually, testClient, uid } from '../harness/context.ts';

const kc = loadKubeConfig(inject('kubeconfig'));
const client = testClient();
const core = kc.makeApiClient(CoreV1Api);
const NS = 'default';
const id = uid();
const dir = mkdtempSync(join(tmpdir(), 'crowbar-kube-request-'));
const cleanup: (() => Promise<unknown>)[] = [];

afterAll(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

async function noderole(): Promise<NodeRole> {
  const role = `kr-${id}-${uid()}`;
  const name = `${role}.n1.kr.crowbar.dev`;
  const nr = await client.create(
    'NodeRole',
    { metadata: { name }, spec: { role, node: 'n1.kr.crowbar.dev', deployment: 'kr' } },
    'crowbar-test',
  );
  cleanup.push(() => client.delete('NodeRole', name));
  return nr;
}

describe('the lean request path', () => {
  it('reads and writes what client-node reads and writes', async () => {
    const nr = await noderole();
    const name = nr.metadata.name ?? '';
    const written = await client.mergePatchStatus(
      'NodeRole',
      name,
      {
        metadata: { resourceVersion: nr.metadata.resourceVersion },
        status: { state: 'todo', message: 'lean' },
      },
      'crowbar-test',
    );
    expect(written.status?.message).toBe('lean');
    expect(written.metadata.resourceVersion).not.toBe(nr.metadata.resourceVersion);
    // The status write is owned by the field manager named in the query.
    expect(written.metadata.managedFields?.map((m) => m.manager)).toContain('crowbar-test');
    const lean = await client.get('NodeRole', name);
    const generated: unknown = await client.api.getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURALS.NodeRole,
      name,
    });
    expect(lean).toEqual(generated);
    expect(lean).toEqual(written);
    const patched = await client.mergePatch(
      'NodeRole',
      name,
      { metadata: { labels: { lean: 'yes' } } },
      'crowbar-test',
    );
    expect(patched.metadata.labels).toEqual({ lean: 'yes' });
    const jp = await client.jsonPatchStatus(
      'NodeRole',
      name,
      [
        { op: 'test', path: '/metadata/resourceVersion', value: patched.metadata.resourceVersion },
        { op: 'replace', path: '/status/message', value: 'json patch' },
      ],
      'crowbar-test',
    );
    expect(jp.status?.message).toBe('json patch');
  });

  it('throws what callers tell apart: 404, 409 and 422 with the API server message', async () => {
    expect(await client.get('NodeRole', `missing-${id}.n1.kr.crowbar.dev`)).toBeUndefined();
    const missing: unknown = await client
      .mergePatchStatus('NodeRole', `missing-${id}.n1.kr.crowbar.dev`, { status: {} }, 'x')
      .catch((e: unknown) => e);
    expect(isNotFound(missing)).toBe(true);

    const nr = await noderole();
    const name = nr.metadata.name ?? '';
    await client.mergePatchStatus('NodeRole', name, { status: { message: 'a' } }, 'x');
    // Written from a resourceVersion that is no longer current: refused, not clobbered.
    const stale: unknown = await client
      .mergePatchStatus(
        'NodeRole',
        name,
        { metadata: { resourceVersion: nr.metadata.resourceVersion }, status: { message: 'b' } },
        'x',
      )
      .catch((e: unknown) => e);
    expect(isConflict(stale)).toBe(true);
    expect((await client.get('NodeRole', name))?.status?.message).toBe('a');

    const invalid: unknown = await client
      .mergePatchStatus('NodeRole', name, { status: { state: 'bogus' } }, 'x')
      .catch((e: unknown) => e);
    expect(apiCode(invalid)).toBe(422);
    expect(apiMessage(invalid)).toMatch(/status\.state/);
  });

  it('authenticates with a ServiceAccount token read from a file, as in a cluster', async () => {
    const sa = `kr-${id}`;
    await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: sa } } });
    cleanup.push(() => core.deleteNamespacedServiceAccount({ name: sa, namespace: NS }));
    const tr = await core.createNamespacedServiceAccountToken({
      name: sa,
      namespace: NS,
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { audiences: [] },
      },
    });
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, tr.status?.token ?? '');
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the test kubeconfig names no cluster');
    const withToken = (user: object): KubeConfig => {
      const c = new KubeConfig();
      c.loadFromOptions({
        clusters: [cluster],
        users: [{ name: 'u', ...user }],
        contexts: [{ name: 'x', cluster: cluster.name, user: 'u' }],
        currentContext: 'x',
      });
      return c;
    };
    const path = `/apis/${GROUP}/${VERSION}/${PLURALS.NodeRole}/missing-${id}.n1.kr.crowbar.dev`;
    // The account may read nothing: the API server's refusal names it, so the token was sent.
    const fromFile: unknown = await kubeRequest(
      withToken({ authProvider: { name: 'tokenFile', config: { tokenFile } } }),
      'GET',
      path,
    ).catch((e: unknown) => e);
    expect(apiCode(fromFile)).toBe(403);
    expect(apiMessage(fromFile)).toContain(`system:serviceaccount:${NS}:${sa}`);
    const bogus: unknown = await kubeRequest(
      withToken({ token: 'not-a-token' }),
      'GET',
      path,
    ).catch((e: unknown) => e);
    expect(apiCode(bogus)).toBe(401);
  });

  it("sends the recorder's Events", async () => {
    const registry = new Registry();
    const recorder = new EventRecorder(kc, registry, pino({ level: 'silent' }), {
      namespace: NS,
      component: 'crowbar-test',
    });
    const queued = async (): Promise<string> =>
      /^crowbar_events_queued (\d+)$/m.exec(await registry.metrics())?.[1] ?? 'missing';
    const name = `kr-${id}.n1.kr.crowbar.dev`;
    recorder.normal({ kind: 'NodeRole', name, uid: `uid-${id}` }, 'Succeeded', 'lean event');
    // The first is on its way; the second waits for it (one at a time).
    const second = `kr-${id}.n2.kr.crowbar.dev`;
    recorder.normal({ kind: 'NodeRole', name: second }, 'Succeeded', 'second event');
    expect(await queued()).toBe('1');
    const ev = await eventually('the event', async () => {
      const list = await core.listNamespacedEvent({
        namespace: NS,
        fieldSelector: `involvedObject.name=${name}`,
      });
      return list.items[0];
    });
    expect(ev.reason).toBe('Succeeded');
    expect(ev.message).toBe('lean event');
    expect(ev.type).toBe('Normal');
    expect(ev.involvedObject.uid).toBe(`uid-${id}`);
    expect(ev.source?.component).toBe('crowbar-test');
    expect(ev.count).toBe(1);
    expect(ev.firstTimestamp).toBeInstanceOf(Date);
    await eventually('the queue sent', async () => (await queued()) === '0');
    const list = await core.listNamespacedEvent({
      namespace: NS,
      fieldSelector: `involvedObject.name=${name}`,
    });
    for (const e of list.items)
      cleanup.push(() =>
        core.deleteNamespacedEvent({ name: e.metadata.name ?? '', namespace: NS }),
      );
  });
});
