import { request as httpRequest } from 'node:http';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Deployment, Role } from '../generated/crowbar.ts';
import type { ClusterSnapshot } from './decide.ts';
import { makeWebhookMetrics } from './metrics.ts';
import { listen, makeHandler, type Listening } from './server.ts';
import { Coalescer, staticSource, type SnapshotSource } from './state.ts';

const log = pino({ level: 'silent' });

const system: Deployment = {
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Deployment',
  metadata: { name: 'system' },
  spec: { state: 'committed' },
};
const roleA: Role = {
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Role',
  metadata: { name: 'a' },
  spec: { jig: 'noop', requires: ['b'] },
};
const empty: ClusterSnapshot = {
  roles: [],
  noderoles: [],
  nodes: [],
  deployments: [system],
  networks: [],
  networkallocations: [],
  bootenvs: [],
};

function review(
  operation: string,
  resource: string,
  kind: string,
  obj: unknown,
  uid = 'uid-1',
): object {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: 'crowbar.dev', version: 'v1alpha1', kind },
      resource: { group: 'crowbar.dev', version: 'v1alpha1', resource },
      operation,
      ...(operation === 'DELETE' ? { oldObject: obj } : { object: obj }),
    },
  };
}

const roleB = (requires: string[]): Role => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Role',
  metadata: { name: 'b' },
  spec: { jig: 'noop', requires },
});

let server: Listening | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(source: SnapshotSource, maxBodyBytes = 64 * 1024) {
  const metrics = makeWebhookMetrics({ defaultMetrics: false });
  server = await listen(makeHandler({ source, metrics, log, maxBodyBytes, freshTimeoutMs: 500 }), {
    host: '127.0.0.1',
    port: 0,
    log,
  });
  return { port: server.port, metrics };
}

function call(
  port: number,
  path: string,
  opts: { method?: string; body?: string | Buffer } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: opts.method ?? (opts.body !== undefined ? 'POST' : 'GET'),
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('webhook server', () => {
  it('denies with 403 and echoes the uid; allows', async () => {
    const { port } = await start(staticSource({ ...empty, roles: [roleA] }));
    const denied = await call(port, '/validate', {
      body: JSON.stringify(review('CREATE', 'roles', 'Role', roleB(['a']), 'uid-deny')),
    });
    expect(denied.status).toBe(200);
    expect(JSON.parse(denied.body)).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: {
        uid: 'uid-deny',
        allowed: false,
        status: {
          code: 403,
          reason: 'Forbidden',
          message: expect.stringMatching(/b -> a -> b/) as unknown,
        },
      },
    });
    const allowed = await call(port, '/validate', {
      body: JSON.stringify(review('CREATE', 'roles', 'Role', roleB([]), 'uid-ok')),
    });
    expect(JSON.parse(allowed.body)).toMatchObject({ response: { uid: 'uid-ok', allowed: true } });
  });

  it('re-checks a refusal from the cache against fresh lists', async () => {
    let freshCalls = 0;
    // The cache has not yet seen that role a was changed to drop its require on b.
    const fresh = { ...empty, roles: [{ ...roleA, spec: { jig: 'noop' as const } }] };
    const { port, metrics } = await start(
      staticSource({ ...empty, roles: [roleA] }, () => {
        freshCalls++;
        return Promise.resolve(fresh);
      }),
    );
    const res = await call(port, '/validate', {
      body: JSON.stringify(review('CREATE', 'roles', 'Role', roleB(['a']))),
    });
    expect(JSON.parse(res.body)).toMatchObject({ response: { allowed: true } });
    expect(freshCalls).toBe(1);
    const text = await metrics.registry.metrics();
    expect(text).toContain('crowbar_admission_fresh_reads_total{outcome="overturned"} 1');
  });

  it('re-checks a refusal by listing only what the decision reads', async () => {
    const asked: (readonly string[] | undefined)[] = [];
    const { port } = await start(
      staticSource({ ...empty, roles: [roleA] }, (kinds) => {
        asked.push(kinds);
        return Promise.resolve({ ...empty, roles: [roleA] });
      }),
    );
    for (let i = 0; i < 20; i++) {
      const res = await call(port, '/validate', {
        body: JSON.stringify(review('CREATE', 'roles', 'Role', roleB(['a']), `u${String(i)}`)),
      });
      expect(JSON.parse(res.body)).toMatchObject({ response: { allowed: false } });
    }
    // 20 refused role creates: 20 lists of Roles, no NodeRole, Node or allocation list.
    expect(asked).toEqual(Array.from({ length: 20 }, () => ['Role']));
  });

  it('keeps metric labels to known kinds whatever kind a client names', async () => {
    const { port, metrics } = await start(staticSource(empty));
    for (let i = 0; i < 200; i++) {
      await call(port, '/validate', {
        body: JSON.stringify(review('CREATE', 'roles', `Kind${String(i)}`, roleB([]))),
      });
    }
    const text = await metrics.registry.metrics();
    expect(text).toContain(
      'crowbar_admission_requests_total{kind="other",operation="CREATE",result="allowed"} 200',
    );
    expect(text).not.toMatch(/kind="Kind\d+"/);
  });

  it('keeps the cached refusal when fresh lists fail', async () => {
    const { port } = await start(
      staticSource({ ...empty, roles: [roleA] }, () => Promise.reject(new Error('apiserver down'))),
    );
    const res = await call(port, '/validate', {
      body: JSON.stringify(review('CREATE', 'roles', 'Role', roleB(['a']))),
    });
    expect(JSON.parse(res.body)).toMatchObject({ response: { allowed: false } });
  });

  it('decides from fresh lists before the caches sync, and fails closed if it cannot', async () => {
    const { port } = await start(staticSource(undefined, () => Promise.resolve(empty)));
    const ok = await call(port, '/validate', {
      body: JSON.stringify(review('DELETE', 'deployments', 'Deployment', system)),
    });
    expect(JSON.parse(ok.body)).toMatchObject({
      response: { allowed: false, status: { code: 403 } },
    });
    await server?.close();
    const { port: p2 } = await start(staticSource(undefined));
    const failed = await call(p2, '/validate', {
      body: JSON.stringify(review('DELETE', 'deployments', 'Deployment', system)),
    });
    expect(JSON.parse(failed.body)).toMatchObject({
      response: {
        allowed: false,
        status: { code: 500, message: expect.stringMatching(/try again/) as unknown },
      },
    });
  });

  it.each([
    ['not JSON', '{', 400, /not JSON/],
    ['not a review', '{"kind":"Pod"}', 400, /AdmissionReview/],
    [
      'a review without uid',
      JSON.stringify({ ...review('CREATE', 'roles', 'Role', roleA), request: {} }),
      400,
      /uid/,
    ],
  ])('answers %s with 400 and keeps serving', async (_what, body, status, re) => {
    const { port, metrics } = await start(staticSource(empty));
    const res = await call(port, '/validate', { body });
    expect(res.status).toBe(status);
    expect(res.body).toMatch(re);
    expect((await call(port, '/healthz')).status).toBe(200);
    expect(await metrics.registry.metrics()).toContain(
      'crowbar_admission_requests_total{kind="unknown",operation="unknown",result="malformed"} 1',
    );
  });

  it('refuses a body over the limit with 413', async () => {
    const { port } = await start(staticSource(empty), 2048);
    const res = await call(port, '/validate', { body: Buffer.alloc(4096, 'x') });
    expect(res.status).toBe(413);
    expect((await call(port, '/healthz')).status).toBe(200);
  });

  it('refuses GET on /validate and unknown paths', async () => {
    const { port } = await start(staticSource(empty));
    expect((await call(port, '/validate')).status).toBe(405);
    expect((await call(port, '/nope')).status).toBe(404);
  });

  it('is ready only when every informer has synced', async () => {
    const { port } = await start(staticSource(undefined));
    const res = await call(port, '/readyz');
    expect(res.status).toBe(503);
    expect(res.body).toMatch(/Role, NodeRole, Node, Deployment, Network, NetworkAllocation/);
    await server?.close();
    const { port: p2 } = await start(staticSource(empty));
    expect((await call(p2, '/readyz')).status).toBe(200);
  });

  it('counts requests by kind, operation and result in /metrics', async () => {
    const { port } = await start(staticSource(empty));
    await call(port, '/validate', {
      body: JSON.stringify(review('DELETE', 'deployments', 'Deployment', system)),
    });
    await call(port, '/validate', {
      body: JSON.stringify(review('CREATE', 'roles', 'Role', roleB([]))),
    });
    const text = (await call(port, '/metrics')).body;
    expect(text).toContain(
      'crowbar_admission_requests_total{kind="Deployment",operation="DELETE",result="denied"} 1',
    );
    expect(text).toContain(
      'crowbar_admission_requests_total{kind="Role",operation="CREATE",result="allowed"} 1',
    );
    expect(text).toContain('crowbar_webhook_informer_synced{kind="NodeRole"} 1');
  });
});

describe('Coalescer', () => {
  it('never hands a caller a run that started before it asked, and shares later runs', async () => {
    const releases: (() => void)[] = [];
    let runs = 0;
    const c = new Coalescer(() => {
      const n = ++runs;
      return new Promise<number>((r) =>
        releases.push(() => {
          r(n);
        }),
      );
    });
    const first = c.run();
    const second = c.run(); // arrives while run 1 is in flight: waits for run 2
    const third = c.run(); // shares run 2
    expect(runs).toBe(1);
    releases[0]?.();
    expect(await first).toBe(1);
    await new Promise((r) => setImmediate(r));
    expect(runs).toBe(2);
    releases[1]?.();
    expect(await second).toBe(2);
    expect(await third).toBe(2);
    const fourth = c.run(); // nothing in flight: a new run
    expect(runs).toBe(3);
    releases[2]?.();
    expect(await fourth).toBe(3);
  });

  it('starts the next run after a failed one', async () => {
    let runs = 0;
    const c = new Coalescer(() =>
      ++runs === 1 ? Promise.reject(new Error('x')) : Promise.resolve(runs),
    );
    const a = c.run();
    const b = c.run();
    await expect(a).rejects.toThrow('x');
    expect(await b).toBe(2);
  });
});
