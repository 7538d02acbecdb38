/**
 * `make lab`: a whole Crowbar on this machine. Starts the real control plane (etcd,
 * kube-apiserver, kube-controller-manager), applies the CRDs, starts the operator, applies the
 * examples in lab/examples/, prints how to point kubectl at it, and stays up until Ctrl-C.
 * `--check` brings it up, verifies it, and tears it down (used by the test suite).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { binDir } from '../test/harness/bins.ts';
import { freePort, startProcess, waitFor } from '../test/harness/process.ts';
import { CrowbarClient, loadKubeConfig } from '../operator/kube/client.ts';
import { applyManifests, readManifests } from './apply.ts';
import { CP_DIR, KUBECONFIG, LAB_DIR, LAB_PID, PIDS } from './state.ts';

const check = process.argv.includes('--check');
const say = (msg: string): void => {
  console.log(`lab: ${msg}`);
};

function alreadyRunning(): number | undefined {
  if (!existsSync(LAB_PID)) return undefined;
  const pid = Number(readFileSync(LAB_PID, 'utf8'));
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

const other = alreadyRunning();
if (other !== undefined) {
  console.error(
    `lab: a lab is already running (pid ${other}); stop it with Ctrl-C there or \`make lab-down\``,
  );
  process.exit(1);
}
mkdirSync(LAB_DIR, { recursive: true });
writeFileSync(LAB_PID, String(process.pid));

const t0 = performance.now();
say('starting etcd, kube-apiserver and kube-controller-manager');
const cp = await startControlPlane({ dir: CP_DIR, keepDir: true, controllerManager: true });
say(`control plane ready in ${(cp.startMs / 1000).toFixed(1)} s at ${cp.server}; CRDs established`);

const healthPort = await freePort();
const op = startProcess(
  process.execPath,
  [
    join(import.meta.dirname, '..', 'operator', 'main.ts'),
    `--kubeconfig=${KUBECONFIG}`,
    `--health-addr=127.0.0.1:${healthPort}`,
    '--identity=lab-operator',
  ],
  join(LAB_DIR, 'operator.log'),
  { pidFile: PIDS },
);
const ready = async (): Promise<boolean> => {
  const r = await fetch(`http://127.0.0.1:${healthPort}/readyz`).catch(() => undefined);
  return r?.status === 200;
};
await waitFor('the operator to be ready (see .lab/operator.log)', ready, 60_000);
say(
  `operator ready (health and metrics on http://127.0.0.1:${healthPort}); log: .lab/operator.log`,
);

const kc = loadKubeConfig(KUBECONFIG);
const examples = readdirSync(join(import.meta.dirname, 'examples'))
  .filter((f) => f.endsWith('.yaml'))
  .sort();
await applyManifests(
  kc,
  readManifests(examples.map((f) => join(import.meta.dirname, 'examples', f))),
);
say(`applied lab/examples/ (${examples.join(', ')})`);

const client = new CrowbarClient(kc);
await waitFor(
  'the system deployment',
  async () => (await client.get('Deployment', 'system')) !== undefined,
  30_000,
);
// Until the SSH fleet lands, the lab's machines are simulated: mark them alive.
for (const n of await client.list('Node')) {
  await client.mergePatchStatus(
    'Node',
    n.metadata.name ?? '',
    { status: { alive: true } },
    'crowbar-lab',
  );
}
say(`up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

async function teardown(code: number): Promise<never> {
  say('stopping');
  await op.stop();
  await cp.stop();
  rmSync(LAB_PID, { force: true });
  process.exit(code);
}

if (check) {
  const nodes = await client.list('Node');
  if (nodes.length < 3) {
    console.error(`lab: expected the example nodes, found ${nodes.length}`);
    await teardown(1);
  }
  say(`check passed: ${nodes.length} nodes, operator ready`);
  await teardown(0);
}

console.log(`
Crowbar lab is up. In another shell:

  export KUBECONFIG=${KUBECONFIG}
  export PATH=${binDir()}:$PATH     # kubectl and helm built for this lab
  kubectl get crowbar
  kubectl get noderoles -o wide -w

Press Ctrl-C to stop (or run \`make lab-down\` from another shell).
`);
process.on('SIGINT', () => void teardown(0));
process.on('SIGTERM', () => void teardown(0));
setInterval(() => {
  if (op.proc.exitCode !== null) {
    console.error('lab: the operator exited; see .lab/operator.log');
    void teardown(1);
  }
}, 2000);
