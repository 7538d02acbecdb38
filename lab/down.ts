/**
 * `make lab-down`: stops a lab left behind (its processes are recorded in .lab/: the lab itself,
 * etcd, kube-apiserver, kube-controller-manager, the admission webhook and the operator) and
 * removes the fleet's network namespaces (`cblab-*`) with the sshds in them.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { deleteNamespace, reapStaleLabs, run } from '../test/harness/netns.ts';
import { FLEET_PREFIX } from './fleet.ts';
import { CP_DIR, LAB_PID, PIDS } from './state.ts';

function kill(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

const pids = [LAB_PID, PIDS]
  .filter((f) => existsSync(f))
  .flatMap((f) => readFileSync(f, 'utf8').split('\n').map(Number))
  .filter((p) => p > 0);
let stopped = 0;
for (const p of pids) if (kill(p, 'SIGTERM')) stopped++;
await new Promise((r) => setTimeout(r, 2000));
for (const p of pids) kill(p, 'SIGKILL');
rmSync(CP_DIR, { recursive: true, force: true });
await reapStaleLabs();
const { stdout } = await run('ip', ['netns', 'list']).catch(() => ({ stdout: '' }));
const leftover = stdout
  .split('\n')
  .map((l) => l.split(' ')[0] ?? '')
  .filter((ns) => ns.startsWith(`${FLEET_PREFIX}-`));
await run('ip', ['link', 'del', `${FLEET_PREFIX}up`]).catch(() => undefined);
for (const ns of leftover) await deleteNamespace(ns);
if (leftover.length > 0) console.log(`lab-down: removed ${leftover.length} fleet namespace(s)`);
rmSync(LAB_PID, { force: true });
console.log(
  stopped > 0 ? `lab-down: stopped ${stopped} process(es)` : 'lab-down: no lab was running',
);
