/**
 * `make lab`: a whole Crowbar on this machine, as the Helm chart runs it. Starts the real control
 * plane (etcd, kube-apiserver, kube-controller-manager), applies the CRDs, starts the admission
 * webhook and registers it (lab/webhook.ts), creates the lab fleet (three machines: network
 * namespaces with their own sshd, see lab/fleet.ts), starts the operator, applies the examples in
 * lab/examples/, commits the lab deployment so its script roles run on the fleet, prints how to
 * point kubectl at it, waits until everything has converged (lab/converge.ts) and says so in one
 * line, and stays up until Ctrl-C. When it has not converged in CONVERGE_TIMEOUT_MS it prints
 * what is not active and why, and keeps watching.
 * `--check` brings it up, requires full convergence and the webhook's refusals, and tears it down
 * (used by the test suite).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { binDir } from '../test/harness/bins.ts';
import { freePort, startProcess, waitFor } from '../test/harness/process.ts';
import { CrowbarClient, loadKubeConfig } from '../operator/kube/client.ts';
import { applyManifests, readManifests } from './apply.ts';
import { convergedSummary, convergence, type Convergence } from './converge.ts';
import { labKey, registerFleet, startFleet, type Fleet } from './fleet.ts';
import { CP_DIR, KUBECONFIG, LAB_DIR, LAB_PID, PIDS, WEBHOOK_DIR, WEBHOOK_LOG } from './state.ts';
import { dryRun, dryRunAnswer, startLabWebhook, type LabWebhook } from './webhook.ts';
import { startDnsSidecar } from '../dns-sidecar/lab.ts';
import { statusPolicyName } from '../webhooks/status-policy.ts';
import { applyStatusPolicy, dryRunStatusAs, LAB_RELEASE, LAB_USER } from './status-policy.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

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
const ADMIN_NODE = 'admin.lab.crowbar.dev';
/** How long the lab waits for convergence before saying what is not active (it keeps watching). */
const CONVERGE_TIMEOUT_MS = 90_000;
const kc = loadKubeConfig(KUBECONFIG);

let webhook: LabWebhook;
try {
  webhook = await startLabWebhook({
    kc,
    kubeconfig: KUBECONFIG,
    dir: WEBHOOK_DIR,
    log: WEBHOOK_LOG,
    pidFile: PIDS,
  });
} catch (e) {
  await cp.stop();
  rmSync(LAB_PID, { force: true });
  throw e;
}
say(
  `admission webhook ready at ${webhook.url}, registered with the API server (ValidatingWebhookConfiguration crowbar.dev, failurePolicy Fail); log: .lab/webhook.log`,
);

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
  await webhook.stop();
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

// The DNS sidecar serves the lab's zones (A/AAAA/PTR for every allocated address) on the lab
// bridge's host address, where the fleet's machines reach it.
const dnsPort = Number(process.env['CROWBAR_LAB_DNS_PORT'] ?? 53);
const dns = await startDnsSidecar({
  kubeconfig: KUBECONFIG,
  domains: ['lab.crowbar.dev'],
  host: fleet.lab.hostAddress,
  port: dnsPort,
  nameservers: [`ns1.lab.crowbar.dev=${fleet.lab.hostAddress}`],
  stateFile: join(LAB_DIR, 'dns-serials.json'),
  logFile: join(LAB_DIR, 'dns.log'),
});
say(
  `DNS sidecar ready at ${fleet.lab.hostAddress}:${String(dnsPort)} (dig @${fleet.lab.hostAddress} -p ${String(dnsPort)} node1.lab.crowbar.dev); log: .lab/dns.log`,
);

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
await applyStatusPolicy(kc, FLEET_NODES[0] ?? '');
say(
  `status policy enforced: only the operator (here: ${LAB_USER}) writes status of crowbar.dev objects (ValidatingAdmissionPolicy ${statusPolicyName(LAB_RELEASE)}); ClusterRoles ${LAB_RELEASE}-crowbar-viewer and -editor for people`,
);
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
  await dns.stop();
  // With failurePolicy Fail the webhook must outlive every writer: the operator goes first.
  await webhook.stop();
  await stopFleet();
  await cp.stop();
  rmSync(LAB_PID, { force: true });
  process.exit(code);
}

const expectations = { deployments: ['system', 'lab'], adminNode: ADMIN_NODE, minNodes: 4 };
async function observe(): Promise<Convergence> {
  const [roles, noderoles, nodes, deployments] = await Promise.all([
    client.list('Role'),
    client.list('NodeRole'),
    client.list('Node'),
    client.list('Deployment'),
  ]);
  return convergence({ roles, noderoles, nodes, deployments }, expectations);
}

/** Polls until the lab has converged; undefined after `timeoutMs`. */
async function converged(timeoutMs: number): Promise<Convergence | undefined> {
  let last: Convergence | undefined;
  try {
    await waitFor(
      'the lab to converge',
      async () => {
        last = await observe();
        return last.converged;
      },
      timeoutMs,
      250,
    );
    return last;
  } catch {
    return undefined;
  }
}

const sinceStart = (): string => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

/** Waits for convergence and says so in one line, or says what is not active and why. */
async function awaitConvergence(): Promise<Convergence | undefined> {
  const done = await converged(CONVERGE_TIMEOUT_MS);
  if (done) {
    say(`converged in ${sinceStart()}: ${convergedSummary(done)}`);
    return done;
  }
  const now = await observe().catch(() => undefined);
  console.error(
    `lab: not converged after ${String(CONVERGE_TIMEOUT_MS / 1000)} s; not active yet:\n` +
      (now?.pending ?? ['(could not read the cluster)']).map((l) => `  ${l}`).join('\n') +
      `\nlab: see .lab/operator.log and \`kubectl get noderoles -o wide\`${check ? '' : '; still watching'}`,
  );
  return undefined;
}

if (check) {
  const done = await awaitConvergence();
  if (!done) await teardown(1);
  const report = await client.get('NodeRole', `lab-report.${FLEET_NODES[0] ?? ''}`);
  say(`lab-report on ${FLEET_NODES[0] ?? ''}: ${JSON.stringify(report?.status?.wall)}`);
  // What the webhook refuses in the tests, it refuses in the lab (dry runs: nothing changes).
  const refusals: [what: string, pattern: RegExp, write: () => Promise<unknown>][] = [
    [
      'a require that closes a cycle (dns-server requiring dns-client)',
      /dependency cycle/,
      () => dryRun.mergePatch(kc, 'Role', 'dns-server', { spec: { requires: ['dns-client'] } }),
    ],
    [
      'a status write by an account that is not the operator (a cluster admin at that)',
      /written only by the Crowbar operator/,
      () =>
        dryRunStatusAs(kc, 'lab-someone', 'Node', FLEET_NODES[0] ?? '', {
          status: { alive: false },
        }),
    ],
    [
      `deleting dns-server.${ADMIN_NODE}, whose active children live on the fleet`,
      /delete those children first/,
      () => dryRun.delete(kc, 'NodeRole', `dns-server.${ADMIN_NODE}`),
    ],
  ];
  for (const [what, pattern, write] of refusals) {
    const a = await dryRunAnswer(write);
    if (a.allowed || a.code !== 403 || !pattern.test(a.message)) {
      console.error(
        `lab: admission should refuse ${what}; the API server answered ${a.allowed ? 'allowed' : `${String(a.code)}: ${a.message}`}`,
      );
      await teardown(1);
    }
    say(`${/status write/.test(what) ? 'status policy' : 'webhook'} refused ${what}`);
  }
  // Every node's name resolves to the address the allocator gave it (dig, a real client).
  const node1 = FLEET_NODES[0] ?? '';
  const want = (await client.list('NetworkAllocation'))
    .filter((a) => a.spec.node === node1 && a.spec.family === 'ipv4')
    .map((a) => a.spec.address.split('/')[0] ?? '');
  let answer: string[] = [];
  await waitFor(
    `${node1} in DNS`,
    async () => {
      const { stdout } = await promisify(execFile)('dig', [
        '+short',
        '+norec',
        '-p',
        String(dnsPort),
        `@${fleet.lab.hostAddress}`,
        node1,
        'A',
      ]);
      answer = stdout.trim().split('\n').filter(Boolean);
      return want.length > 0 && want.every((w) => answer.includes(w));
    },
    15_000,
  ).catch(async () => {
    console.error(
      `lab: ${node1} resolves to ${answer.join(', ') || 'nothing'}, not to ${want.join(', ') || 'its addresses'}`,
    );
    await teardown(1);
  });
  say(`DNS answers ${node1} A ${answer.join(', ')}`);
  say(
    `check passed: ${String(done?.nodes ?? 0)} nodes, operator, webhook and DNS ready; ${done ? convergedSummary(done) : ''}`,
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
  kubectl delete nr dns-server.${ADMIN_NODE}    # the webhook refuses: its children live on the fleet
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
  if (webhook.proc.proc.exitCode !== null) {
    console.error('lab: the admission webhook exited; see .lab/webhook.log');
    void teardown(1);
  }
}, 2000);
// Not converged in time: keep watching, and say so once it is.
if (!(await awaitConvergence())) {
  const late = await converged(Number.MAX_SAFE_INTEGER);
  if (late) say(`converged in ${sinceStart()}: ${convergedSummary(late)}`);
}
