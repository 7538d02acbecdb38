/** `make lab-down`: stops a lab left behind (its processes are recorded in .lab/). */
import { existsSync, readFileSync, rmSync } from 'node:fs';
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
rmSync(LAB_PID, { force: true });
console.log(
  stopped > 0 ? `lab-down: stopped ${stopped} process(es)` : 'lab-down: no lab was running',
);
