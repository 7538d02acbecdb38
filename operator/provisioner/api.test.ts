import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import { MAX_NETWORK_WAIT_S, networkWaitSeconds, provisionerRoutes } from './api.ts';
import type { ProvisionerDeps } from './api.ts';

describe('networkWaitSeconds', () => {
  it.each([
    ['/provision/v1/nodes/n/network', 0],
    ['/provision/v1/nodes/n/network?wait=0', 0],
    ['/provision/v1/nodes/n/network?wait=15', 15],
    [`/provision/v1/nodes/n/network?wait=${String(MAX_NETWORK_WAIT_S)}`, MAX_NETWORK_WAIT_S],
    [`/provision/v1/nodes/n/network?wait=${String(MAX_NETWORK_WAIT_S + 1)}`, undefined],
    ['/provision/v1/nodes/n/network?wait=-1', undefined],
    ['/provision/v1/nodes/n/network?wait=1.5', undefined],
    ['/provision/v1/nodes/n/network?wait=', undefined],
    ['/provision/v1/nodes/n/network?wait=9999999999', undefined],
  ])('%s → %s', (url, want) => {
    expect(networkWaitSeconds(url)).toBe(want);
  });
});

/** The provisioner's routes on a loopback server. */
async function listen(deps: ProvisionerDeps): Promise<Server> {
  const route = provisionerRoutes(deps);
  const s = createServer((req, res) => {
    void route(req, res, (req.url ?? '').split('?')[0] ?? '');
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return s;
}

function closeServer(server: Server | undefined): Promise<void> {
  return new Promise<void>((r) => {
    if (server)
      server.close(() => {
        r();
      });
    else r();
  });
}

describe('the network endpoint', () => {
  const NAME = 'd52-54-00-00-00-01.example.com';
  let server: Server | undefined;
  afterEach(() => closeServer(server));

  /** The route over a loopback server, with a Node whose address the test sets. */
  async function serve(): Promise<{
    get: (query: string) => Promise<{ status: number; body: string }>;
    allocate: () => void;
    waiting: () => number;
    /** Resolves when a request starts waiting. */
    waiter: Promise<void>;
  }> {
    let onWaiter: (() => void) | undefined;
    const waiter = new Promise<void>((r) => (onWaiter = r));
    let node: Node = {
      apiVersion: 'crowbar.dev/v1alpha1',
      kind: 'Node',
      metadata: { name: NAME },
      spec: {},
    };
    const wakers = new Set<() => void>();
    const deps = {
      getNode: (n: string) => Promise.resolve(n === NAME ? node : undefined),
      verifyNodeToken: (_n: string, t: string) => Promise.resolve(t === 'good'),
      provisionNetwork: 'admin',
      log: { child: () => ({ info: () => undefined, warn: () => undefined }) },
      waitForNode: (
        _n: string,
        ready: (x: Readonly<Node>) => boolean,
        ms: number,
        signal: AbortSignal,
      ) =>
        new Promise<Readonly<Node> | undefined>((resolve) => {
          const done = (x: Readonly<Node> | undefined): void => {
            clearTimeout(timer);
            wakers.delete(check);
            resolve(x);
          };
          const check = (): void => {
            if (ready(node)) done(node);
          };
          const timer = setTimeout(() => {
            done(undefined);
          }, ms);
          signal.addEventListener('abort', () => {
            done(undefined);
          });
          wakers.add(check);
          onWaiter?.();
          check();
        }),
    } as unknown as ProvisionerDeps;
    server = await listen(deps);
    const port = (server.address() as AddressInfo).port;
    return {
      get: (query) =>
        new Promise((resolve, reject) => {
          const req = request(
            {
              host: '127.0.0.1',
              port,
              path: `/provision/v1/nodes/${NAME}/network${query}`,
              headers: { authorization: 'Bearer good' },
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
          req.end();
        }),
      allocate: () => {
        node = {
          ...node,
          status: { addresses: [{ network: 'admin', address: '10.0.0.160/24' }] },
        };
        for (const w of [...wakers]) w();
      },
      waiting: () => wakers.size,
      waiter,
    };
  }

  it('answers at once without ?wait, empty while there is no address', async () => {
    const s = await serve();
    expect(await s.get('')).toEqual({ status: 200, body: 'address=\n' });
  });

  it('holds a ?wait request until the address is allocated', async () => {
    const s = await serve();
    const pending = s.get('?wait=30');
    // The answer comes from the allocation, not from the 30 s passing: the test would time out.
    await s.waiter;
    expect(s.waiting()).toBe(1);
    s.allocate();
    expect(await pending).toEqual({ status: 200, body: 'address=10.0.0.160/24\n' });
    expect(s.waiting()).toBe(0);
  });

  it('answers empty when the wait passes, and refuses a wait out of bounds', async () => {
    const s = await serve();
    expect(await s.get('?wait=1')).toEqual({ status: 200, body: 'address=\n' });
    const bad = await s.get('?wait=31');
    expect(bad.status).toBe(400);
    expect(bad.body).toContain('wait must be a whole number of seconds, 0 to 30');
  });
});

describe('registration on a kernel variant that saw too little', () => {
  const MAC = '52:54:00:00:00:05';
  const NAME = `d52-54-00-00-00-05.example.com`;
  let server: Server | undefined;
  afterEach(() => closeServer(server));

  /**
   * The register route over loopback with an in-memory Node store; `ack` is what the boot
   * sidecar does with each Node write (acknowledge its generation, or not).
   */
  async function serve(o: { existing?: Node; ack: boolean }) {
    let node: Node | undefined = o.existing;
    const events: { type: string; reason: string; message: string }[] = [];
    const write = (spec: Node['spec']): Node => {
      const generation = (node?.metadata.generation ?? 0) + 1;
      node = {
        apiVersion: 'crowbar.dev/v1alpha1',
        kind: 'Node',
        metadata: { name: NAME, generation, uid: 'u1' },
        spec: { ...node?.spec, ...spec },
        ...(o.ack ? { status: { bootEnv: { applied: 'sledgehammer', generation } } } : {}),
      };
      return node;
    };
    const deps = {
      client: {
        create: (kind: string, obj: Node) =>
          Promise.resolve(kind === 'Node' ? write(obj.spec) : obj),
        mergePatch: (_k: string, _n: string, p: { spec: Node['spec'] }) =>
          Promise.resolve(write(p.spec)),
        mergePatchStatus: () => Promise.resolve(node),
      },
      nodes: () => (node ? [node] : []),
      getNode: () => Promise.resolve(node),
      waitForNode: (_n: string, ready: (x: Readonly<Node>) => boolean) =>
        Promise.resolve(node && ready(node) ? node : undefined),
      network: () => ({ spec: { subnet: '127.0.0.0/8' } }),
      provisionNetwork: 'admin',
      discoveryBootEnv: 'sledgehammer',
      domain: 'example.com',
      tokens: {
        verify: () => Promise.resolve(false),
        token: () => Promise.resolve('reg'),
        secret: () => Promise.resolve(Buffer.from('s')),
      },
      ensureToken: () => Promise.resolve(),
      sshPublicKey: () => Promise.resolve('ssh-ed25519 AAAA test'),
      recorder: {
        normal: (_t: unknown, reason: string, message: string) =>
          events.push({ type: 'Normal', reason, message }),
        warning: (_t: unknown, reason: string, message: string) =>
          events.push({ type: 'Warning', reason, message }),
      },
      fieldManager: 'test',
      log: { child: () => ({ info: () => undefined, warn: () => undefined }) },
    } as unknown as ProvisionerDeps;
    server = await listen(deps);
    const port = (server.address() as AddressInfo).port;
    const register = (body: object) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            method: 'POST',
            path: '/provision/v1/register',
            headers: { 'content-type': 'application/json', accept: 'text/plain' },
          },
          (res) => {
            let b = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (b += c));
            res.on('end', () => {
              resolve({ status: res.statusCode ?? 0, body: b });
            });
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify(body));
      });
    return { register, events, node: () => node };
  }

  const sata = {
    mac: MAC,
    variant: 'virtio',
    hardware: {
      disks: [],
      unclaimed: [{ address: '0000:00:1f.2', class: '010601', vendor: '8086', device: '2922' }],
    },
  };

  it('turns variants off with the Node and says reboot once the sidecar acknowledged it', async () => {
    const s = await serve({ ack: true });
    const r = await s.register(sata);
    expect(r.status).toBe(201);
    expect(r.body).toMatch(
      /^reboot=kernel variant virtio sees no disk and has no driver for storage controller 0000:00:1f\.2 \(8086:2922\); booting sledgehammer's own kernel$/m,
    );
    expect(s.node()?.spec.kernelVariants).toBe('off');
    expect(s.events.map((e) => e.reason)).toContain('KernelVariantOff');
  });

  it('does not reboot without the acknowledgement, nor when variants were already off', async () => {
    const unacked = await serve({ ack: false });
    const r = await unacked.register(sata);
    expect(r.status).toBe(201);
    expect(r.body).not.toMatch(/^reboot=/m);
    expect(unacked.node()?.spec.kernelVariants).toBe('off');
    expect(unacked.events).toContainEqual(
      expect.objectContaining({
        type: 'Warning',
        reason: 'KernelVariantShortfall',
        message: expect.stringMatching(/did not acknowledge generation 1/) as unknown,
      }),
    );
    server?.close();
    server = undefined;
    // A stale sidecar served the variant to a Node that has it off: one more boot would not help.
    const off = await serve({
      ack: true,
      existing: {
        apiVersion: 'crowbar.dev/v1alpha1',
        kind: 'Node',
        metadata: { name: NAME, generation: 3, uid: 'u1' },
        spec: { macs: [MAC], kernelVariants: 'off' },
        status: { addresses: [{ network: 'admin', address: '127.0.0.1/8' }] },
      },
    });
    const r2 = await off.register(sata);
    expect(r2.status).toBe(200);
    expect(r2.body).not.toMatch(/^reboot=/m);
    expect(off.events).toContainEqual(
      expect.objectContaining({
        reason: 'KernelVariantShortfall',
        message: expect.stringMatching(/served the variant anyway/) as unknown,
      }),
    );
  });

  it('a variant that saw its disks registers as usual', async () => {
    const s = await serve({ ack: true });
    const r = await s.register({
      ...sata,
      hardware: { ...sata.hardware, disks: [{ name: 'vda', sizeBytes: 1 << 30 }] },
    });
    expect(r.body).not.toMatch(/^reboot=/m);
    expect(s.node()?.spec.kernelVariants).toBeUndefined();
    expect(s.events).toEqual([expect.objectContaining({ reason: 'Discovered' })]);
  });
});
