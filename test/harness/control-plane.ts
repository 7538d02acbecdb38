/**
 * A real Kubernetes control plane on loopback: etcd, kube-apiserver and (optionally)
 * kube-controller-manager, built from the Go module proxy by tools/build-bins.sh.
 * One per test run (vitest global setup) or per lab.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { bin } from './bins.ts';
import { makePki, type Pki } from './pki.ts';
import { freePort, startProcess, waitFor, type Started } from './process.ts';
import { applyCrds } from './crds.ts';

export interface ControlPlane {
  dir: string;
  server: string;
  kubeconfig: string;
  pki: Pki;
  /** Milliseconds from start to a ready API server with CRDs established. */
  startMs: number;
  stop(): Promise<void>;
  /** etcd's process (the chaos suite pauses it with SIGSTOP). */
  etcd: Started;
  /** Stops kube-apiserver (SIGTERM) and starts it again on the same address. */
  restartApiserver(): Promise<void>;
}

export interface ControlPlaneOptions {
  /** Run directory; a fresh one under /dev/shm (tmpfs, fast etcd) when omitted. */
  dir?: string;
  /** Also run kube-controller-manager (namespace, GC, job, ttl-after-finished controllers). */
  controllerManager?: boolean;
  /** Apply the CRDs in crds/ (default true). */
  crds?: boolean;
  /** Keep the run directory on stop (the lab keeps its logs). */
  keepDir?: boolean;
}

const RUN_ROOT = existsSync('/dev/shm') ? '/dev/shm' : '/tmp';

function kubeconfigYaml(server: string, pki: Pki): string {
  const b64 = (f: string) => readFileSync(f).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: crowbar\n  cluster:\n    server: ${server}\n    certificate-authority-data: ${b64(pki.caCrt)}`,
    'users:',
    `- name: admin\n  user:\n    client-certificate-data: ${b64(pki.adminCrt)}\n    client-key-data: ${b64(pki.adminKey)}`,
    'contexts:',
    '- name: crowbar\n  context:\n    cluster: crowbar\n    user: admin',
    'current-context: crowbar',
    '',
  ].join('\n');
}

/** GET over TLS with the admin certificate; resolves to the HTTP status (0 on connection error). */
export function adminGet(server: string, pki: Pki, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(
      `${server}${path}`,
      {
        method: 'GET',
        ca: readFileSync(pki.caCrt),
        cert: readFileSync(pki.adminCrt),
        key: readFileSync(pki.adminKey),
        timeout: 5000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', () => {
      resolve(0);
    });
    req.on('timeout', () => {
      req.destroy();
    });
    req.end();
  });
}

/** Kills processes of earlier runs whose owner died without cleaning up (e.g. SIGKILLed runner). */
export function reapStaleRuns(): void {
  for (const name of readdirSync(RUN_ROOT)) {
    if (!name.startsWith('crowbar-cp-')) continue;
    const dir = join(RUN_ROOT, name);
    const owner = Number(name.split('-')[2]);
    if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) continue;
    const pids = join(dir, 'pids');
    if (existsSync(pids)) {
      for (const line of readFileSync(pids, 'utf8').split('\n')) {
        const pid = Number(line);
        if (pid > 0 && isAlive(pid)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function startEtcd(dir: string, pidFile: string): Promise<{ url: string; p: Started }> {
  for (let attempt = 1; ; attempt++) {
    const [client, peer] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${client}`;
    const data = join(dir, 'etcd');
    rmSync(data, { recursive: true, force: true });
    const p = startProcess(
      bin('etcd'),
      [
        '--name',
        'crowbar',
        '--data-dir',
        data,
        '--listen-client-urls',
        url,
        '--advertise-client-urls',
        url,
        '--listen-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-cluster',
        `crowbar=http://127.0.0.1:${peer}`,
        '--unsafe-no-fsync',
        '--log-level',
        'warn',
        '--quota-backend-bytes',
        String(4 * 1024 ** 3),
      ],
      join(dir, 'etcd.log'),
      { pidFile },
    );
    try {
      await waitFor(
        'etcd /health',
        () => httpOk(`${url}/health`, () => p.proc.exitCode !== null),
        30_000,
      );
      return { url, p };
    } catch (e) {
      await p.stop();
      if (attempt >= 3)
        throw new Error(`etcd did not start; see ${join(dir, 'etcd.log')}`, { cause: e });
    }
  }
}

function httpOk(url: string, dead: () => boolean): Promise<boolean> {
  if (dead()) return Promise.reject(new Error('process exited'));
  return new Promise((resolve) => {
    httpGet(url, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).on('error', () => {
      resolve(false);
    });
  });
}

async function startApiserver(
  dir: string,
  pki: Pki,
  etcd: string,
  pidFile: string,
  samePort?: number,
): Promise<{ server: string; p: Started }> {
  for (let attempt = 1; ; attempt++) {
    // A restart keeps its address (clients hold it); a port still in TIME_WAIT is fine to
    // listen on again, and a failed start is retried on the same port.
    const port = samePort ?? (await freePort());
    const server = `https://127.0.0.1:${port}`;
    const p = startProcess(
      bin('kube-apiserver'),
      [
        `--etcd-servers=${etcd}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${port}`,
        '--advertise-address=127.0.0.1',
        '--endpoint-reconciler-type=none',
        `--cert-dir=${pki.dir}`,
        `--tls-cert-file=${pki.apiserverCrt}`,
        `--tls-private-key-file=${pki.apiserverKey}`,
        `--client-ca-file=${pki.caCrt}`,
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${pki.saPub}`,
        `--service-account-signing-key-file=${pki.saKey}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--authorization-mode=RBAC',
        '--allow-privileged=true',
        '--disable-admission-plugins=ServiceAccount',
        '--v=1',
      ],
      join(dir, 'apiserver.log'),
      { pidFile },
    );
    try {
      await waitFor(
        'kube-apiserver /readyz',
        async () => {
          if (p.proc.exitCode !== null) throw new Error('kube-apiserver exited');
          return (await adminGet(server, pki, '/readyz')) === 200;
        },
        90_000,
        150,
      );
      await waitFor(
        'namespace default',
        async () => (await adminGet(server, pki, '/api/v1/namespaces/default')) === 200,
        30_000,
      );
      return { server, p };
    } catch (e) {
      await p.stop();
      if (attempt >= 3)
        throw new Error(`kube-apiserver did not start; see ${join(dir, 'apiserver.log')}`, {
          cause: e,
        });
    }
  }
}

function startControllerManager(
  dir: string,
  kubeconfig: string,
  pki: Pki,
  pidFile: string,
): Started {
  return startProcess(
    bin('kube-controller-manager'),
    [
      `--kubeconfig=${kubeconfig}`,
      '--controllers=namespace-controller,garbage-collector-controller,job-controller,ttl-after-finished-controller',
      '--leader-elect=false',
      '--use-service-account-credentials=false',
      '--bind-address=127.0.0.1',
      '--secure-port=0',
      `--root-ca-file=${pki.caCrt}`,
      '--concurrent-job-syncs=10',
      '--v=1',
    ],
    join(dir, 'controller-manager.log'),
    { pidFile },
  );
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const t0 = performance.now();
  reapStaleRuns();
  const dir = opts.dir ?? join(RUN_ROOT, `crowbar-cp-${process.pid}-${Date.now().toString(36)}`);
  mkdirSync(dir, { recursive: true });
  const pidFile = join(dir, 'pids');
  writeFileSync(pidFile, '');
  const stops: Started[] = [];
  const stop = async (): Promise<void> => {
    for (const s of stops.reverse()) await s.stop();
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const pki = makePki(join(dir, 'pki'));
    const etcd = await startEtcd(dir, pidFile);
    stops.push(etcd.p);
    let api = await startApiserver(dir, pki, etcd.url, pidFile);
    stops.push(api.p);
    const restartApiserver = async (): Promise<void> => {
      const old = api;
      await old.p.stop();
      api = await startApiserver(dir, pki, etcd.url, pidFile, Number(new URL(old.server).port));
      stops[stops.indexOf(old.p)] = api.p;
    };
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, kubeconfigYaml(api.server, pki), { mode: 0o600 });
    if (opts.controllerManager ?? true)
      stops.push(startControllerManager(dir, kubeconfig, pki, pidFile));
    if (opts.crds ?? true) await applyCrds(kubeconfig);
    return {
      dir,
      server: api.server,
      kubeconfig,
      pki,
      startMs: performance.now() - t0,
      stop,
      etcd: etcd.p,
      restartApiserver,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
