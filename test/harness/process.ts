/** Child processes that are always stopped: on stop(), on process exit and on SIGINT/SIGTERM. */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, openSync, closeSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

const live = new Set<ChildProcess>();
let hooked = false;

function killAll(): void {
  for (const p of live) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

export interface Started {
  proc: ChildProcess;
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Starts `bin` with output appended to `log`. `pidFile`, when given, records the pid so a later run
 * can reap processes left by a runner that was killed with SIGKILL.
 */
export function startProcess(
  bin: string,
  args: string[],
  log: string,
  opts: { env?: NodeJS.ProcessEnv; pidFile?: string; cwd?: string } = {},
): Started {
  hookExit();
  const fd = openSync(log, 'a');
  const proc = spawn(bin, args, {
    stdio: ['ignore', fd, fd],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  closeSync(fd);
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  if (opts.pidFile && proc.pid !== undefined) appendFileSync(opts.pidFile, `${proc.pid}\n`);
  return { proc, stop: (ms) => stopProcess(proc, ms) };
}

export async function stopProcess(p: ChildProcess, timeoutMs = 15_000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) =>
    p.once('exit', () => {
      r();
    }),
  );
  p.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>(
    (r) =>
      (timer = setTimeout(() => {
        r('timeout');
      }, timeoutMs)),
  );
  const res = await Promise.race([exited.then(() => 'exited' as const), timedOut]);
  clearTimeout(timer);
  if (res === 'timeout') {
    p.kill('SIGKILL');
    await exited;
  }
}

/** A free TCP port on 127.0.0.1 (racy by nature; callers retry on bind failure). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => {
        resolve(port);
      });
    });
  });
}

/** Polls `probe` until it returns true; throws with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 100,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      if (await probe()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: last });
}
