/**
 * `make lab`: a whole Crowbar on this machine. Starts the real control plane (etcd,
 * kube-apiserver, kube-controller-manager), applies the CRDs, starts the operator, creates the lab
 * fleet (three machines: network namespaces with their own sshd, see lab/fleet.ts), applies the
 * examples in lab/examples/, commits the lab deployment so its script roles run on the fleet,
 * prints how to point kubectl at it, and stays up until Ctrl-C.
 * `--check` brings it up, verifies that the script roles converge, and tears it down (used by the
 * test suite).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { binDir } from '../test/harness/bins.ts';
import { freePort, startProcess, waitFor } from '../test/harness/process.ts';
import { CrowbarClient, loadKubeConfig } from '../operator/kube/client.ts';
import { applyManifests, readManifests } from './apply.ts';
import { labKey, registerFleet, startFleet, type Fleet } from './fleet.ts';
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

const FLEET_NODES = ['node1.lab.crowbar.dev', 'node2.lab.crowbar.dev', 'node3.lab.crowbar.dev'];
const key = await labKey(join(LAB_DIR, 'ssh'));
let fleet: Fleet | undefined;
const stopFleet = async (): Promise<void> => {
  await fleet?.stop().catch((e: unknown) => {
    console.error(`lab: removing the fleet failed: ${(e as Error).message}`);
  });
};
try {
  fleet = await startFleet(FLEET_NODES, key, join(LAB_DIR, 'fleet'));
} catch (e) {
  await cp.stop();
  rmSync(LAB_PID, { force: true });
  throw e;
}
say(
  `fleet up: ${[...fleet.sshds].map(([n, s]) => `${n} at ${s.address}`).join(', ')} (sshd in network namespaces ${fleet.lab.prefix}-*)`,
);

const healthPort = await freePort();
const apiPort = await freePort();
const op = startProcess(
  process.execPath,
  [
    join(import.meta.dirname, '..', 'operator', 'main.ts'),
    `--kubeconfig=${KUBECONFIG}`,
    `--health-addr=127.0.0.1:${healthPort}`,
    '--identity=lab-operator',
    `--ssh-key-file=${key.path}`,
    `--api-addr=127.0.0.1:${apiPort}`,
    '--alive-interval-ms=5000',
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
await registerFleet(client, fleet);
say('lab machines registered: their Nodes carry their addresses; the operator checks aliveness');
// The admin node has no machine behind it (no addresses): it stands in as alive.
for (const n of await client.list('Node')) {
  if (FLEET_NODES.includes(n.metadata.name ?? '') || n.spec.system === true) continue;
  await client.mergePatchStatus(
    'Node',
    n.metadata.name ?? '',
    { status: { alive: true } },
    'crowbar-lab',
  );
}
await client.mergePatch('Deployment', 'lab', { spec: { state: 'committed' } }, 'crowbar-lab');
say('committed deployment lab: lab-facts and lab-report run on the fleet over SSH');
say(`up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

async function teardown(code: number): Promise<never> {
  say('stopping');
  await op.stop();
  await stopFleet();
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
  const scripted = (nr: { spec: { role: string } }): boolean =>
    nr.spec.role === 'lab-facts' || nr.spec.role === 'lab-report';
  try {
    await waitFor(
      'the lab script roles to be active on the fleet',
      async () => {
        const nrs = (await client.list('NodeRole')).filter(scripted);
        return (
          nrs.length === 2 * FLEET_NODES.length && nrs.every((nr) => nr.status?.state === 'active')
        );
      },
      90_000,
      500,
    );
  } catch {
    for (const nr of (await client.list('NodeRole')).filter(scripted))
      console.error(
        `lab: ${nr.metadata.name ?? ''}: ${nr.status?.state ?? '-'} ${nr.status?.message ?? ''}`,
      );
    console.error('lab: the script roles did not converge; see .lab/operator.log');
    await teardown(1);
  }
  const report = await client.get('NodeRole', `lab-report.${FLEET_NODES[0] ?? ''}`);
  say(`lab-report on ${FLEET_NODES[0] ?? ''}: ${JSON.stringify(report?.status?.wall)}`);
  say(
    `check passed: ${nodes.length} nodes, operator ready, ${2 * FLEET_NODES.length} script noderoles active on the fleet`,
  );
  await teardown(0);
}

console.log(`
Crowbar lab is up. In another shell:

  export KUBECONFIG=${KUBECONFIG}
  export PATH=${binDir()}:$PATH     # kubectl and helm built for this lab
  kubectl get crowbar
  kubectl get noderoles -o wide -w
  kubectl get cbnode -o wide                    # the fleet's aliveness
  ssh -i ${key.path} root@${fleet.sshds.get(FLEET_NODES[0] ?? '')?.address ?? ''}   # a lab machine

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
