/**
 * The node self-report API (operator/api/server.ts) over TLS against the real API server: its
 * certificate from a CA of the test's own, real token Secrets (operator/api/tokens.ts) in a fresh
 * namespace, real Node status writes. Enumeration, floods, plain HTTP and token rotation.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNodeApi, type NodeApi } from '../../operator/api/server.ts';
import { FlapDamper } from '../../operator/controllers/aliveness/damping.ts';
import { NodeTokens, TOKEN_KEY, purposeToken, tokenSecretName } from '../../operator/api/tokens.ts';
import { testClient, uid } from '../harness/context.ts';
import { issueLeaf, makeCa } from '../harness/pki.ts';

const client = testClient();
const core = client.kc.makeApiClient(CoreV1Api);
const id = uid();
const ns = `nodeapi-${id}`;
const FM = 'node-api-test';
const log = pino({ level: 'silent' });
const nodeA = `a-${id}.api.example.com`;
const nodeB = `b-${id}.api.example.com`;
let dir = '';
let ca = '';
let api: NodeApi | undefined;
let tokens: NodeTokens;
let clock = 1_000_000;
/** Nodes whose token Secret a check found missing (what the operator enqueues). */
const missing: string[] = [];

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

function post(path: string, token?: string, tls = true, port?: number): Promise<Reply> {
  const opts = {
    host: '127.0.0.1',
    port: port ?? api?.port ?? 0,
    path,
    method: 'POST',
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    timeout: 5000,
    ...(tls ? { ca } : {}),
  };
  return new Promise((resolve, reject) => {
    const req = (tls ? httpsRequest : httpRequest)(opts, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** The node's `alive` token, derived from the secret in its Secret as the operator does. */
async function tokenOf(node: string): Promise<string> {
  const s = await core.readNamespacedSecret({ name: tokenSecretName(node), namespace: ns });
  return purposeToken(Buffer.from(s.data?.[TOKEN_KEY] ?? '', 'base64').toString('utf8'), 'alive');
}

/** Tokens live an hour here: the tests below move the clock past that on purpose only. */
const TTL = 3_600_000;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'crowbar-nodeapi-'));
  ca = readFileSync(makeCa(dir, '/CN=crowbar-node-api-test-ca').crt, 'utf8');
  const leaf = issueLeaf(dir, 'node-api', '/CN=localhost', true);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  for (const n of [nodeA, nodeB]) {
    await client.create('Node', { metadata: { name: n }, spec: {} }, FM);
  }
  tokens = new NodeTokens(core, ns, log, {
    now: () => clock,
    ttlMs: TTL,
    onMissing: (fqdn) => missing.push(fqdn),
  });
  for (const n of [nodeA, nodeB]) {
    await tokens.ensure({ name: n, uid: (await client.get('Node', n))?.metadata.uid });
  }
  api = await startNodeApi({
    host: '127.0.0.1',
    port: 0,
    client,
    getNode: (name) => client.get('Node', name),
    verify: (fqdn, token) => tokens.verify(fqdn, token),
    renew: (fqdn) => tokens.current(fqdn),
    damper: new FlapDamper(),
    fieldManager: FM,
    log,
    tls: { cert: readFileSync(leaf.crt), key: readFileSync(leaf.key) },
    rate: { burst: 5, perSecond: 1, maxKeys: 1000 },
    now: () => clock,
  });
});

afterAll(async () => {
  await api?.close();
  for (const n of [nodeA, nodeB]) await client.delete('Node', n).catch(() => undefined);
  await core.deleteNamespace({ name: ns }).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

describe('node self-report API', () => {
  it('serves TLS only: a plain HTTP request gets no answer', async () => {
    await expect(
      post(`/api/v1/nodes/${nodeA}/alive`, await tokenOf(nodeA), false),
    ).rejects.toThrow();
  });

  it('answers an unknown node exactly as a wrong token, so names cannot be enumerated', async () => {
    clock += 60_000;
    const unknown = await post(
      `/api/v1/nodes/nope-${id}.api.example.com/alive`,
      await tokenOf(nodeA),
    );
    const wrong = await post(`/api/v1/nodes/${nodeB}/alive`, await tokenOf(nodeA));
    const none = await post(`/api/v1/nodes/${nodeB}/alive`);
    for (const r of [unknown, wrong, none]) {
      expect(r.status).toBe(401);
      expect(r.body).toBe(unknown.body);
      expect(r.headers['www-authenticate']).toBe('Bearer realm="crowbar-node"');
    }
    expect(unknown.body).not.toContain('nope');
  });

  it("limits each node's requests, without touching another node's", async () => {
    clock += 60_000;
    const token = await tokenOf(nodeA);
    const answers: number[] = [];
    for (let i = 0; i < 12; i++)
      answers.push((await post(`/api/v1/nodes/${nodeA}/alive`, token)).status);
    expect(answers).toEqual([...Array<number>(5).fill(200), ...Array<number>(7).fill(429)]);
    const limited = await post(`/api/v1/nodes/${nodeA}/alive`, token);
    expect(limited.headers['retry-after']).toBe('1');
    expect((await post(`/api/v1/nodes/${nodeB}/alive`, await tokenOf(nodeB))).status).toBe(200);
    clock += 1000;
    expect((await post(`/api/v1/nodes/${nodeA}/dead`, token)).status).toBe(200);
    expect((await client.get('Node', nodeA))?.status?.alive).toBe(false);
    // A flood of made-up names is refused before any Secret is read.
    clock += 60_000;
    const flood = await Promise.all(
      Array.from({ length: 6 }, () => post(`/api/v1/nodes/flood-${id}.api.example.com/alive`, 'x')),
    );
    expect(flood.map((r) => r.status).sort()).toEqual([401, 401, 401, 401, 401, 429]);
  });

  it('keeps the Secret it made or rotated: no read back before the node next reports', async () => {
    const name = `c-${id}.api.example.com`;
    await client.create('Node', { metadata: { name }, spec: {} }, FM);
    let reads = 0;
    const counting = {
      readNamespacedSecret: (a: Parameters<CoreV1Api['readNamespacedSecret']>[0]) => {
        reads++;
        return core.readNamespacedSecret(a);
      },
      createNamespacedSecret: (a: Parameters<CoreV1Api['createNamespacedSecret']>[0]) =>
        core.createNamespacedSecret(a),
      replaceNamespacedSecret: (a: Parameters<CoreV1Api['replaceNamespacedSecret']>[0]) =>
        core.replaceNamespacedSecret(a),
    };
    const own = new NodeTokens(counting, ns, log, { now: () => clock, ttlMs: TTL });
    const uid = (await client.get('Node', name))?.metadata.uid;
    await own.ensure({ name, uid });
    expect(reads).toBe(1); // the Secret did not exist yet
    expect(await own.verify(name, await tokenOf(name))).toBe(true);
    expect(reads).toBe(1);
    await client.delete('Node', name);
  });

  it('rotates: a deleted token Secret is made again and the old token stops working', async () => {
    clock += 60_000;
    const old = await tokenOf(nodeB);
    expect((await post(`/api/v1/nodes/${nodeB}/alive`, old)).status).toBe(200);
    await core.deleteNamespacedSecret({ name: tokenSecretName(nodeB), namespace: ns });
    // Until the cache is stale the old token still works (TOKEN_CACHE_MS) ...
    clock += 1000;
    expect((await post(`/api/v1/nodes/${nodeB}/alive`, old)).status).toBe(200);
    // ... then the token is refused, and the node-tokens controller is told to make a new Secret
    // at once (the operator enqueues the node; here the test calls what its pass calls).
    clock += 60_000;
    expect(missing).not.toContain(nodeB);
    expect((await post(`/api/v1/nodes/${nodeB}/alive`, old)).status).toBe(401);
    expect(missing).toContain(nodeB);
    await tokens.ensure({ name: nodeB, uid: (await client.get('Node', nodeB))?.metadata.uid });
    const made = await tokenOf(nodeB);
    expect(made).not.toBe(old);
    expect((await post(`/api/v1/nodes/${nodeB}/alive`, old)).status).toBe(401);
    clock += 60_000;
    expect((await post(`/api/v1/nodes/${nodeB}/alive`, made)).status).toBe(200);
  });

  it('refuses the raw secret and other purposes\u2019 tokens: each purpose has its own', async () => {
    clock += 60_000;
    const sec = await core.readNamespacedSecret({ name: tokenSecretName(nodeA), namespace: ns });
    const raw = Buffer.from(sec.data?.[TOKEN_KEY] ?? '', 'base64').toString('utf8');
    for (const t of [raw, purposeToken(raw, 'install'), purposeToken(raw, 'register')]) {
      expect((await post(`/api/v1/nodes/${nodeA}/alive`, t)).status).toBe(401);
    }
    expect((await post(`/api/v1/nodes/${nodeA}/alive`, purposeToken(raw, 'alive'))).status).toBe(
      200,
    );
  });

  it('expires tokens, rotates them halfway with no gap, and a standby replica agrees', async () => {
    clock += 60_000;
    // A standby: its own cache, the same Secrets. It has seen node A's token already.
    const standby = new NodeTokens(core, ns, log, { now: () => clock, ttlMs: TTL });
    const old = await tokenOf(nodeA);
    expect(await standby.verify(nodeA, old)).toBe(true);
    const secretOf = () =>
      core.readNamespacedSecret({ name: tokenSecretName(nodeA), namespace: ns });
    const expiresBefore = (await secretOf()).metadata?.annotations?.['crowbar.dev/token-expires'];
    expect(Date.parse(expiresBefore ?? '')).toBeGreaterThan(clock);

    // Past half its life, the leader's pass rotates it; the old token stays valid until its
    // own expiry, on the leader and on the standby alike.
    clock += TTL / 2 + 1000;
    await tokens.ensure({ name: nodeA, uid: (await client.get('Node', nodeA))?.metadata.uid });
    const rotated = await secretOf();
    expect(rotated.metadata?.annotations?.['crowbar.dev/previous-expires']).toBe(expiresBefore);
    const fresh = await tokenOf(nodeA);
    expect(fresh).not.toBe(old);
    for (const t of [old, fresh]) {
      expect(await standby.verify(nodeA, t)).toBe(true);
      expect(await tokens.verify(nodeA, t)).toBe(true);
    }
    // The node renews with the token it holds and gets the current one.
    const renewed = await post(`/api/v1/nodes/${nodeA}/token`, old);
    expect(renewed.status).toBe(200);
    const body = JSON.parse(renewed.body) as { token: string; expires: string };
    expect(body.token).toBe(fresh);
    expect(Date.parse(body.expires)).toBe(clock + TTL);

    // Past the old token's expiry: refused everywhere, through the API too; the new one works.
    clock += TTL / 2;
    expect(await standby.verify(nodeA, old)).toBe(false);
    expect((await post(`/api/v1/nodes/${nodeA}/alive`, old)).status).toBe(401);
    expect((await post(`/api/v1/nodes/${nodeA}/alive`, fresh)).status).toBe(200);
    expect(await standby.verify(nodeA, fresh)).toBe(true);

    // With no rotation (no leader), a token past its own expiry is refused too.
    clock += TTL;
    expect(await standby.verify(nodeA, fresh)).toBe(false);
    expect((await post(`/api/v1/nodes/${nodeA}/token`, fresh)).status).toBe(401);
  });

  it('damps a node flapping alive and dead: held dead, then let back once it settles', async () => {
    clock += 60_000;
    await tokens.ensure({ name: nodeB, uid: (await client.get('Node', nodeB))?.metadata.uid });
    const token = await tokenOf(nodeB);
    const report = async (what: 'alive' | 'dead') => {
      clock += 1000;
      const r = await post(`/api/v1/nodes/${nodeB}/${what}`, token);
      expect(r.status).toBe(200);
      return JSON.parse(r.body) as { alive: boolean; heldSeconds?: number; message?: string };
    };
    expect((await report('alive')).alive).toBe(true);
    // Three changes in a few seconds go through as reported ...
    for (const what of ['dead', 'alive', 'dead'] as const) {
      expect((await report(what)).alive).toBe(what === 'alive');
    }
    // ... and at the fourth the node is held dead: its "alive" is written as dead, with why and
    // for how long.
    const held = await report('alive');
    expect(held.alive).toBe(false);
    expect(held.heldSeconds).toBeGreaterThan(0);
    const n = await client.get('Node', nodeB);
    expect(n?.status?.alive).toBe(false);
    const cond = n?.status?.conditions?.find((c) => c.type === 'Alive');
    expect(cond?.reason).toBe('Flapping');
    expect(cond?.message).toMatch(/changed between alive and dead \d+ times in quick succession/);
    // The hold is on the Node, so a replica that has never seen the node (a new leader, or a
    // standby whose node API the next report reaches) holds it too.
    expect(n?.status?.aliveDamping).toMatchObject({ suppressed: true, observed: true });
    const other = await startNodeApi({
      host: '127.0.0.1',
      port: 0,
      client,
      getNode: (name) => client.get('Node', name),
      verify: (fqdn, t) => tokens.verify(fqdn, t),
      damper: new FlapDamper(),
      fieldManager: FM,
      log,
      tls: {
        cert: readFileSync(join(dir, 'node-api.crt')),
        key: readFileSync(join(dir, 'node-api.key')),
      },
      rate: { burst: 5, perSecond: 1, maxKeys: 1000 },
      now: () => clock,
    });
    try {
      clock += 1000;
      const r = await post(`/api/v1/nodes/${nodeB}/alive`, token, true, other.port);
      expect(r.status).toBe(200);
      const onOther = JSON.parse(r.body) as { alive: boolean; heldSeconds?: number };
      expect(onOther.alive).toBe(false);
      expect(onOther.heldSeconds).toBeGreaterThan(0);
    } finally {
      await other.close();
    }
    // Quiet until the hold ends: the next report lets it back.
    clock += (held.heldSeconds ?? 0) * 1000;
    expect((await report('alive')).alive).toBe(true);
    const back = await client.get('Node', nodeB);
    expect(back?.status?.alive).toBe(true);
    expect(back?.status?.conditions?.find((c) => c.type === 'Alive')?.reason).toBe('SelfReported');
  });
});
