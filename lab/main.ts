/**
 * `make lab`: a whole Crowbar on this machine, as the Helm chart runs it. Starts the real control
 * plane (etcd, kube-apiserver, kube-controller-manager), applies the CRDs, starts the admission
 * webhook and registers it (lab/webhook.ts), creates the lab fleet (three machines: network
 * namespaces on a bridge, see lab/fleet.ts), starts the operator and the DNS sidecar, applies the
 * examples in lab/examples/ with their admin network on the bridge's /24, binds the admin network
 * to the machines' Nodes, starts the DHCP sidecar on the bridge, boots the machines by DHCP (each
 * gets its Node's admin address, then starts its sshd), commits the lab deployment so its script
 * roles run on the fleet, prints how to
 * point kubectl at it, waits until everything has converged (lab/converge.ts) and says so in one
 * line, and stays up until Ctrl-C. When it has not converged in CONVERGE_TIMEOUT_MS it prints
 * what is not active and why, and keeps watching.
 * `--check` brings it up, requires full convergence, the webhook's refusals, DNS answers and each
 * machine's DHCP lease (its Node's admin allocation and the network's options), and tears it down
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
import {
  ADMIN_NETWORK,
  bootFleet,
  labKey,
  onLabSubnet,
  registerFleet,
  startFleet,
  type Fleet,
} from './fleet.ts';
import { CP_DIR, KUBECONFIG, LAB_DIR, LAB_PID, PIDS, WEBHOOK_DIR, WEBHOOK_LOG } from './state.ts';
import { dryRun, dryRunAnswer, startLabWebhook, type LabWebhook } from './webhook.ts';
import { issueLeaf, makeCa } from '../test/harness/pki.ts';
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import { DISCOVERY_ROLE, discoveryActive, startLabVms } from './vms.ts';
import { startDnsSidecar } from '../dns-sidecar/lab.ts';
import { startLabDhcpSidecar, type LabSidecar } from '../dhcp-sidecar/lab.ts';
import type { Node } from '../generated/crowbar.ts';
import { statusPolicyName } from '../webhooks/status-policy.ts';
import { applyStatusPolicy, dryRunStatusAs, LAB_RELEASE, LAB_USER } from './status-policy.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NODE_FLAGS } from '../operator/runtime/heap.ts';

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
const client = new CrowbarClient(kc);

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
const exampleFiles = readdirSync(join(import.meta.dirname, 'examples'))
  .filter((f) => f.endsWith('.yaml'))
  .sort();
const exampleObjects = readManifests(
  exampleFiles.map((f) => join(import.meta.dirname, 'examples', f)),
);
// Each fleet machine carries its Node's first MAC, as the examples write it.
const macs = new Map<string, string>();
for (const name of FLEET_NODES) {
  const n = exampleObjects.find((o) => o.kind === 'Node' && o.metadata?.name === name) as
    Node | undefined;
  const mac = n?.spec.macs?.[0];
  if (mac === undefined) throw new Error(`lab/examples/ has no Node ${name} with a MAC`);
  macs.set(name, mac);
}
let fleet: Fleet | undefined;
const stopFleet = async (): Promise<void> => {
  await fleet?.stop().catch((e: unknown) => {
    console.error(`lab: removing the fleet failed: ${(e as Error).message}`);
  });
};
// The machines' resolver is the DNS sidecar (started below on the lab's host address); resolv.conf
// has no port, so only when it listens on 53.
const dnsPort = Number(process.env['CROWBAR_LAB_DNS_PORT'] ?? 53);
try {
  fleet = await startFleet(macs, dnsPort === 53 ? { search: 'lab.crowbar.dev' } : undefined);
} catch (e) {
  await webhook.stop();
  await cp.stop();
  rmSync(LAB_PID, { force: true });
  throw e;
}
say(
  `fleet up: ${[...fleet.machines].map(([n, m]) => `${n} (${m.mac})`).join(', ')} on bridge ${fleet.lab.subnet} (network namespaces ${fleet.lab.prefix}-*); they boot by DHCP once their Nodes have addresses`,
);

const healthPort = await freePort();
const apiPort = await freePort();
/** `make lab VMS=N`: qemu VMs that PXE-boot discovery and become Nodes (lab/vms.ts). */
const VMS = Number(process.env['CROWBAR_LAB_VMS'] ?? '0');
const LAB_DOMAIN = 'lab.crowbar.dev';
// With VMs the node API listens on the lab bridge, where the discovery image calls.
const apiHost = VMS > 0 ? fleet.lab.hostAddress : '127.0.0.1';
// The node API serves HTTPS only, as the chart's does: a certificate from the lab's own CA, which
// the DHCP sidecar hands every netbooted machine as an initrd (ADR 0019), so lab VMs verify it.
const apiPki = join(LAB_DIR, 'api-pki');
rmSync(apiPki, { recursive: true, force: true });
const apiCa = makeCa(apiPki, '/CN=crowbar-lab-node-api-ca');
const apiLeaf = issueLeaf(apiPki, 'node-api', '/CN=localhost', true, [fleet.lab.hostAddress]);
const op = startProcess(
  process.execPath,
  [
    ...NODE_FLAGS,
    join(import.meta.dirname, '..', 'operator', 'main.ts'),
    `--kubeconfig=${KUBECONFIG}`,
    `--health-addr=127.0.0.1:${healthPort}`,
    '--identity=lab-operator',
    `--ssh-key-file=${key.path}`,
    `--api-addr=${apiHost}:${apiPort}`,
    `--api-tls-cert=${apiLeaf.crt}`,
    `--api-tls-key=${apiLeaf.key}`,
    '--alive-interval-ms=5000',
    ...(VMS > 0 ? [`--domain=${LAB_DOMAIN}`] : []),
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
// The node API answers with the lab CA's certificate (401: no node token here).
await waitFor(
  'the node API over HTTPS (see .lab/operator.log)',
  async () => (await nodeApiStatus(apiHost, apiPort, readFileSync(apiCa.crt))) === 401,
  30_000,
);
say(
  `node API on https://${apiHost}:${apiPort} (CA .lab/api-pki/ca.crt; curl --cacert .lab/api-pki/ca.crt -X POST https://${apiHost}:${apiPort}/api/v1/nodes/<fqdn>/alive -H "Authorization: Bearer <token>")`,
);

// The DNS sidecar serves the lab's zones (A/AAAA/PTR for every allocated address) on the lab
// bridge's host address, where the fleet's machines reach it.
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

// The webhook refuses a Node whose bootEnv names no BootEnv: the operator creates the defaults
// (local, sledgehammer) when it starts leading, before the examples' Nodes arrive.
await waitFor(
  'the default BootEnvs local and sledgehammer (the operator creates them)',
  async () =>
    (await client.get('BootEnv', 'local')) !== undefined &&
    (await client.get('BootEnv', 'sledgehammer')) !== undefined,
  30_000,
);
await applyManifests(kc, onLabSubnet(exampleObjects, fleet.lab.subnet));
say(
  `applied lab/examples/ (${exampleFiles.join(', ')}) with network ${ADMIN_NETWORK} on the lab bridge's ${fleet.lab.subnet}`,
);

await waitFor(
  'the system deployment',
  async () => (await client.get('Deployment', 'system')) !== undefined,
  30_000,
);
const adminAddresses = await registerFleet(client, fleet);
say(
  `network-${ADMIN_NETWORK} bound to the fleet's Nodes: ${[...adminAddresses].map(([n, a]) => `${n} ${a}`).join(', ')}`,
);

// The DHCP/TFTP/HTTP boot sidecar on the bridge (in the hub namespace, .2), serving network
// admin: started once the allocations exist, so its first listing holds every reservation.
const labBase = fleet.lab.subnet.replace(/0\/24$/, '');
let dhcp: LabSidecar | undefined;
try {
  dhcp = await startLabDhcpSidecar({
    ns: fleet.lab.hubNs,
    bridge: 'br0',
    serverCidr: `${labBase}2/24`,
    network: ADMIN_NETWORK,
    kubeconfig: KUBECONFIG,
    apiServer: cp.server,
    dir: LAB_DIR,
    dns: fleet.lab.hostAddress,
    domain: 'lab.crowbar.dev',
    apiCaFile: apiCa.crt,
    // The lab VMs' iPXE would otherwise wait 15.75 s (twice for UEFI) for IPv6 (ADR 0027).
    routerAdvertisements: true,
  });
} catch (e) {
  console.error(`lab: ${(e as Error).message}`);
  await teardown(1);
}
say(
  `DHCP sidecar ready at ${dhcp?.serverIp ?? ''} on the lab bridge (DHCP, TFTP, HTTP ${dhcp?.httpBase ?? ''}; the node API's CA as an initrd at ${dhcp?.httpBase ?? ''}/ca/crowbar-ca.cpio.gz); log: .lab/dhcp-sidecar.log`,
);
try {
  await bootFleet(fleet, key, join(LAB_DIR, 'fleet'), PIDS);
} catch (e) {
  console.error(`lab: ${(e as Error).message}`);
  await teardown(1);
}
say(
  `lab machines booted by DHCP: ${[...fleet.leases].map(([n, l]) => `${n} ${l.ip}`).join(', ')}; sshd on each, the operator checks aliveness`,
);
// Ask for an aliveness check now that sshd answers (the Nodes had their addresses before).
for (const node of fleet.machines.keys()) {
  await client.mergePatch(
    'Node',
    node,
    { metadata: { annotations: { 'crowbar.dev/check-alive': String(Date.now()) } } },
    'crowbar-lab',
  );
}
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
if (VMS > 0) {
  try {
    say(
      `booting ${String(VMS)} qemu VM(s) (TCG; BIOS and UEFI in turn) on the lab bridge: they PXE-boot the discovery image from the DHCP sidecar; consoles in .lab/vms/`,
    );
    const vms = await startLabVms({
      count: VMS,
      client,
      hubNs: fleet.lab.hubNs,
      fileRoot: dhcp?.fileRoot ?? '',
      apiUrl: `https://${fleet.lab.hostAddress}:${String(apiPort)}`,
      domain: LAB_DOMAIN,
      dir: LAB_DIR,
      pidFile: PIDS,
    });
    say(
      `VMs registered: ${vms.map((v) => `${v.name} (${v.firmware}, ${v.mac}) as ${v.node}, power driver lab (${v.qmp}): on`).join('; ')}`,
    );
    const left = await discoveryActive(client, vms, 300_000);
    if (left.length > 0) throw new Error(`discovery role not active on ${left.join(', ')}`);
    say(`discovery role ${DISCOVERY_ROLE} active over SSH on ${vms.map((v) => v.node).join(', ')}`);
  } catch (e) {
    console.error(`lab: VMs: ${(e as Error).message}`);
    await teardown(1);
  }
}
say(`up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

async function teardown(code: number): Promise<never> {
  say('stopping');
  await op.stop();
  await dns.stop();
  await dhcp?.stop();
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

/**
 * The noderole graph as `kubectl crowbar graph` draws it (the real CLI, against the lab): dot, SVG
 * and PNG in the lab's directory. Resolves to the files written.
 */
async function drawGraph(): Promise<string[]> {
  const cli = join(import.meta.dirname, '..', 'cli', 'kubectl-crowbar');
  const files: string[] = [];
  for (const format of ['dot', 'svg', 'png']) {
    const file = join(LAB_DIR, `graph.${format}`);
    const args = ['--kubeconfig', KUBECONFIG, 'graph', '-o', format];
    const { stdout } = await promisify(execFile)(
      cli,
      format === 'dot' ? args : [...args, '--file', file],
    );
    if (format === 'dot') writeFileSync(file, stdout);
    files.push(file);
  }
  return files;
}

const sinceStart = (): string => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

/** Waits for convergence and says so in one line, or says what is not active and why. */
async function awaitConvergence(): Promise<Convergence | undefined> {
  const done = await converged(CONVERGE_TIMEOUT_MS);
  if (done) {
    say(`converged in ${sinceStart()}: ${convergedSummary(done)}`);
    await drawGraph().then(
      (files) => {
        say(`the noderole graph (kubectl crowbar graph): ${files.join(', ')}`);
      },
      (e: unknown) => {
        console.error(`lab: drawing the graph failed: ${(e as Error).message}`);
      },
    );
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
  // Every machine's DHCP client holds its Node's admin allocation and the network's options, from
  // the lab's DHCP sidecar (a real exchange: busybox udhcpc in the machine's namespace).
  const allocations = await client.list('NetworkAllocation');
  for (const [node, lease] of fleet.leases) {
    const reserved = allocations
      .filter(
        (a) => a.spec.node === node && a.spec.network === ADMIN_NETWORK && a.spec.family === 'ipv4',
      )
      .map((a) => a.spec.address.split('/')[0] ?? '');
    const label = node.split('.')[0] ?? '';
    const problems = [
      reserved.length === 1 && lease.ip === reserved[0]
        ? ''
        : `address ${lease.ip}, not its allocation ${reserved.join(', ') || '(none)'}`,
      lease.mask === '24' ? '' : `prefix length ${lease.mask}`, // udhcpc gives option 1 as a length
      lease.router === fleet.lab.hostAddress ? '' : `router ${lease.router}`,
      lease.dns.split(' ').includes(fleet.lab.hostAddress) ? '' : `dns ${lease.dns}`,
      lease.hostname === label ? '' : `hostname ${lease.hostname}`,
      lease.domain === 'lab.crowbar.dev' ? '' : `domain ${lease.domain}`,
      lease.serverid === dhcp?.serverIp ? '' : `server ${lease.serverid}`,
    ].filter((p) => p !== '');
    if (problems.length > 0) {
      console.error(`lab: ${node}'s DHCP lease is wrong: ${problems.join('; ')}`);
      await teardown(1);
    }
    say(
      `DHCP gave ${node} ${lease.ip}/${lease.mask} (its admin allocation), router ${lease.router}, dns ${lease.dns}, hostname ${lease.hostname}, domain ${lease.domain}, from ${lease.serverid}`,
    );
  }
  if (dnsPort === 53) {
    // And through a lab machine's own resolver (its resolv.conf names the sidecar): libc's
    // getent and dig without @server, inside the first machine's namespace, by the short name.
    const machine = fleet.machines.values().next().value;
    const short = node1.split('.')[0] ?? '';
    const seen = { getent: '', dig: '' };
    const asks = async (): Promise<boolean> => {
      if (!machine) return false;
      const g = await machine.exec('getent', ['ahostsv4', short]).catch(() => undefined);
      seen.getent = (g?.stdout ?? '').split('\n')[0]?.split(/\s+/)[0] ?? '';
      const d = await machine.exec('dig', ['+short', '+search', short, 'A']).catch(() => undefined);
      seen.dig = (d?.stdout ?? '').trim();
      return want.includes(seen.getent) && want.includes(seen.dig);
    };
    await waitFor(`${short} through a lab machine's resolver`, asks, 15_000).catch(async () => {
      console.error(
        `lab: on ${machine?.ns ?? 'the first lab machine'}, ${short} resolves to ${seen.getent || 'nothing'} (getent) and ${seen.dig || 'nothing'} (dig), not to ${want.join(', ')}`,
      );
      await teardown(1);
    });
    say(
      `lab machine ${machine?.ns ?? ''} resolves ${short} to ${seen.getent} through its own resolver (getent, dig)`,
    );
  }
  say(
    `check passed: ${String(done?.nodes ?? 0)} nodes, operator, webhook, DNS and DHCP ready; ${done ? convergedSummary(done) : ''}`,
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

/**
 * The status of an unauthenticated POST to the node API: over HTTPS verified with `ca`, or plain
 * HTTP without one; 0 on failure.
 */
function nodeApiStatus(host: string, port: number, ca: Buffer | undefined): Promise<number> {
  return new Promise((resolve) => {
    const req = (ca ? request : httpRequest)(
      {
        host,
        port,
        method: 'POST',
        path: '/api/v1/nodes/lab-check.lab.crowbar.dev/alive',
        ...(ca ? { ca } : {}),
        timeout: 5000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => {
      resolve(0);
    });
    req.end();
  });
}
