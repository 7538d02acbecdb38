/**
 * The runner's shell program, run locally under /bin/sh with the payload on stdin (what sshd
 * would do): no network, no SSH. The SSH path is covered by test/integration/script-jig.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CANCEL_COMMAND,
  JOURNAL_DIRS,
  PROTOCOL_TAG,
  RUNNER_COMMAND,
  buildPayload,
  interpret,
  parsePid,
  parseRunnerOutput,
  type RunRequest,
} from './protocol.ts';
import type { JigResult } from '../types.ts';
import { removeJournals } from '../../../test/harness/ssh-fleet.ts';

const id = randomBytes(3).toString('hex');
const scratch = mkdtempSync(join(tmpdir(), `cbt-runner-${id}-`));
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  removeJournals(`cbt-${id}-`);
});

const program = RUNNER_COMMAND.slice("/bin/sh -c '".length, -1);

interface Ran {
  stdout: Buffer;
  code: number | null;
}

function runRunner(stdin: Buffer, onPid?: () => void): Promise<Ran> {
  return startRunner(stdin, onPid).done;
}

/** The runner as sshd would start it; `proc` can be killed to play a dropped session. */
function startRunner(
  stdin: Buffer,
  onPid?: () => void,
): { proc: ChildProcess; done: Promise<Ran>; stdout: () => Buffer } {
  const p = spawn('/bin/sh', ['-c', program], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const done = new Promise<Ran>((resolve, reject) => {
    let sawPid = false;
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error('runner did not finish in 30 s'));
    }, 30_000);
    p.stdout.on('data', (d: Buffer) => {
      out.push(d);
      if (!sawPid && Buffer.concat(out).includes(`${PROTOCOL_TAG} pid `)) {
        sawPid = true;
        onPid?.();
      }
    });
    p.stderr.resume();
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout: Buffer.concat(out), code });
    });
    p.stdin.on('error', () => undefined);
    p.stdin.end(stdin);
  });
  return { proc: p, done, stdout: () => Buffer.concat(out) };
}

let seq = 0;
function req(script: string, patch: Partial<RunRequest> = {}): RunRequest {
  seq += 1;
  return {
    script,
    input: {},
    role: 'r',
    node: 'n1.example',
    noderole: `cbt-${id}-nr${seq}`,
    run: 1,
    timeoutSeconds: 30,
    attempt: randomBytes(8).toString('hex'),
    ...patch,
  };
}

async function jig(r: RunRequest): Promise<{ result: JigResult; ran: Ran }> {
  const t0 = Date.now();
  const ran = await runRunner(buildPayload(r));
  const result = interpret(parseRunnerOutput(ran.stdout), {
    role: r.role,
    node: r.node,
    noderole: r.noderole,
    timeoutSeconds: r.timeoutSeconds,
    elapsedMs: Date.now() - t0,
  });
  return { result, ran };
}

/** Gone: no such process, or a zombie waiting for a (slow) init to reap it. */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

const jigDirs = (): string[] => readdirSync('/tmp').filter((f) => f.startsWith('crowbar-jig.'));

/** The noderole's journal entries (`run-<n>.<attempt>`) on this host. */
const entries = (noderole: string): string[] =>
  readdirSync(join(JOURNAL_DIRS[0], noderole)).filter((f) => f.startsWith('run-'));
const entry = (noderole: string, name: string): string => join(JOURNAL_DIRS[0], noderole, name);

async function waitUntil(ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('runner (local /bin/sh)', () => {
  it('delivers input and names verbatim, returns the output as the wall, cleans up', async () => {
    const marker = join(scratch, 'pwned');
    const hostile = `$(touch ${marker}) \`touch ${marker}\` ' " \n ; | & $HOME`;
    const before = new Set(jigDirs());
    const { result } = await jig(
      req(
        `#!/bin/sh
echo "role=$CROWBAR_ROLE node=$CROWBAR_NODE run=$CROWBAR_RUN"
jq -c --arg dir "$PWD" '{v: .v, role: env.CROWBAR_ROLE, nr: env.CROWBAR_NODEROLE, dir: $dir}' "$CROWBAR_INPUT" > "$CROWBAR_OUTPUT"
`,
        { input: { v: hostile }, run: 7 },
      ),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.wall['v']).toBe(hostile);
    expect(result.wall['role']).toBe('r');
    expect(result.logTail).toBe('role=r node=n1.example run=7');
    expect(existsSync(marker)).toBe(false);
    const dir = String(result.wall['dir']);
    expect(dir).toMatch(/^\/tmp\/crowbar-jig\.[A-Za-z0-9]+\/work$/);
    expect(existsSync(dir)).toBe(false);
    expect(jigDirs().filter((d) => !before.has(d))).toEqual([]);
  });

  it('reports a non-zero exit with the last lines of stdout and stderr', async () => {
    const { result } = await jig(
      req('#!/bin/bash\nfor i in $(seq 1 2000); do echo "line $i"; done\necho oops >&2\nexit 3\n'),
    );
    expect(result).toMatchObject({ ok: false, exitCode: 3 });
    expect(!result.ok && result.message).toContain('exited with status 3');
    expect(result.logTail?.endsWith('line 2000\noops')).toBe(true);
    expect(Buffer.byteLength(result.logTail ?? '')).toBeLessThanOrEqual(4096);
  });

  it('no output file means {}', async () => {
    expect((await jig(req('#!/bin/sh\ntrue\n'))).result).toEqual({ ok: true, wall: {} });
  });

  it('refuses output over 1 MiB, non-objects and non-files', async () => {
    const big = await jig(req('#!/bin/sh\nhead -c 1048577 /dev/zero > "$CROWBAR_OUTPUT"\n'));
    expect(!big.result.ok && big.result.message).toContain('1048577 bytes');
    const arr = await jig(req('#!/bin/sh\necho "[1,2]" > "$CROWBAR_OUTPUT"\n'));
    expect(!arr.result.ok && arr.result.message).toContain('an array');
    const fifo = await jig(req('#!/bin/sh\nmkfifo "$CROWBAR_OUTPUT"\n'));
    expect(!fifo.result.ok && fifo.result.message).toContain('regular file');
  });

  it('a timeout kills the script and its children', async () => {
    const pidFile = join(scratch, 'timeout.pids');
    const t0 = Date.now();
    const r = req(`#!/bin/sh\nsleep 300 &\necho $! > ${pidFile}\necho started\nwait\n`, {
      timeoutSeconds: 1,
    });
    const { result } = await jig(r);
    expect(readFileSync(join(entry(r.noderole, `run-1.${r.attempt}`), 'state'), 'utf8')).toMatch(
      /^timed-out (124|137)\n$/,
    );
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(!result.ok && result.message).toContain('timed out after 1 s');
    expect(result.logTail).toBe('started');
    const child = Number(readFileSync(pidFile, 'utf8'));
    expect(processGone(child)).toBe(true);
  });

  it('another attempt of a noderole while one executes fails fast; the journal keeps the last', async () => {
    const r = req('#!/bin/sh\nsleep 2\necho "{\\"first\\":true}" > "$CROWBAR_OUTPUT"\n');
    let started!: () => void;
    const firstStarted = new Promise<void>((resolve) => (started = resolve));
    const first = runRunner(buildPayload(r), started);
    await firstStarted;
    const t0 = Date.now();
    const second = await jig({ ...r, script: '#!/bin/sh\necho second\n', attempt: 'b2' });
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(!second.result.ok && second.result.message).toMatch(
      new RegExp(`another run of noderole ${r.noderole} is in progress`),
    );
    expect(second.ran.code).toBe(75);
    const f = parseRunnerOutput((await first).stdout);
    expect(f).toMatchObject({ kind: 'result', exitCode: 0, output: 'sent', journal: 'new' });
    // Once it has ended, another attempt runs, and its entry replaces the first one's.
    const third = await jig({ ...r, run: 2, script: '#!/bin/sh\ntrue\n', attempt: 'c3' });
    expect(third.result).toEqual({ ok: true, wall: {} });
    expect(entries(r.noderole)).toEqual(['run-2.c3']);
    expect(readFileSync(join(entry(r.noderole, 'run-2.c3'), 'state'), 'utf8')).toBe('exited 0\n');
  });

  it('the same attempt sent again attaches to the execution or takes its stored result', async () => {
    const count = join(scratch, 'attach.count');
    // The script runs until the test lets it finish (after the second runner has attached), so
    // "attached" does not depend on how fast a loaded machine kills and starts processes.
    const release = join(scratch, 'attach.release');
    const r = req(
      `#!/bin/sh\necho x >> ${count}\ni=0; while [ ! -e ${release} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\necho "{\\"n\\":$(wc -l < ${count})}" > "$CROWBAR_OUTPUT"\n`,
    );
    let started!: () => void;
    const firstStarted = new Promise<void>((resolve) => (started = resolve));
    const first = startRunner(buildPayload(r), started);
    await firstStarted;
    // The session is gone (the operator was killed): the run goes on without it.
    const exited = new Promise((resolve) => first.proc.once('exit', resolve));
    first.proc.kill('SIGKILL');
    await exited;
    // The second runner reports its journal state, then the pid it waits on: let the script end.
    const second = startRunner(buildPayload(r), () => {
      writeFileSync(release, '');
    });
    const ran = await second.done;
    const again = interpret(parseRunnerOutput(ran.stdout), {
      role: r.role,
      node: r.node,
      noderole: r.noderole,
      timeoutSeconds: r.timeoutSeconds,
      elapsedMs: 0,
    });
    expect(again).toEqual({ ok: true, wall: { n: 1 } });
    expect(parseRunnerOutput(ran.stdout)).toMatchObject({ journal: 'attached' });
    const stored = await jig(r);
    expect(stored.result).toEqual({ ok: true, wall: { n: 1 } });
    expect(parseRunnerOutput(stored.ran.stdout)).toMatchObject({ journal: 'stored' });
    expect(parseRunnerOutput(stored.ran.stdout).pid).toBeUndefined();
    expect(readFileSync(count, 'utf8')).toBe('x\n');
    expect(entries(r.noderole)).toEqual([`run-1.${r.attempt}`]);
    // The killed session printed nothing more (its stdout closes once its flock child ends).
    expect(parseRunnerOutput((await first.done).stdout)).toMatchObject({ kind: 'incomplete' });
  });

  it('a cancel stops the detached script; the journal says cancelled', async () => {
    const pidFile = join(scratch, 'cancel.pid');
    const r = req(`#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 600\n`, { timeoutSeconds: 600 });
    let started!: () => void;
    const firstStarted = new Promise<void>((resolve) => (started = resolve));
    const run = startRunner(buildPayload(r), started);
    await firstStarted;
    await waitUntil(() => existsSync(pidFile));
    const script = Number(readFileSync(pidFile, 'utf8'));
    const out = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      const p = spawn('/bin/sh', ['-c', CANCEL_COMMAND.slice("/bin/sh -c '".length, -1)]);
      p.stdout.on('data', (d: Buffer) => chunks.push(d));
      p.on('close', () => {
        resolve(Buffer.concat(chunks));
      });
      p.stdin.end(`${String(parsePid(run.stdout()))}\n`);
    });
    expect(out.toString()).toBe('');
    const report = parseRunnerOutput((await run.done).stdout);
    expect(report).toMatchObject({ kind: 'result', exitCode: 143, end: 'cancelled' });
    expect(processGone(script)).toBe(true);
    const e = entry(r.noderole, `run-1.${r.attempt}`);
    expect(readFileSync(join(e, 'state'), 'utf8')).toBe('cancelled 143\n');
    // Sent again (an operator that restarts after cancelling): the stored outcome, no new run.
    const again = await jig(r);
    expect(!again.result.ok && again.result.message).toContain('was cancelled');
    expect(parseRunnerOutput(again.ran.stdout)).toMatchObject({ journal: 'stored' });
  });

  it('an executor killed before it stored a result is reported lost, never run again', async () => {
    const count = join(scratch, 'lost.count');
    const pidFile = join(scratch, 'lost.pid');
    const r = req(`#!/bin/sh\necho x >> ${count}\necho $$ > ${pidFile}\nexec sleep 600\n`);
    let started!: () => void;
    const firstStarted = new Promise<void>((resolve) => (started = resolve));
    const first = startRunner(buildPayload(r), started);
    await firstStarted;
    await waitUntil(() => existsSync(pidFile));
    const e = entry(r.noderole, `run-1.${r.attempt}`);
    process.kill(Number(readFileSync(join(e, 'pid'), 'utf8')), 'SIGKILL');
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    expect(parseRunnerOutput((await first.done).stdout)).toMatchObject({
      kind: 'error',
      code: 'lost',
    });
    const again = await jig(r);
    expect(!again.result.ok && again.result.message).toMatch(
      /cannot be resumed: run 1 of noderole .* ended on this node without a result/,
    );
    expect(readFileSync(count, 'utf8')).toBe('x\n');
    // The killed executor left its run directory; the next attempt removes it with the entry.
    const orphan = readFileSync(join(e, 'dir'), 'utf8').trim();
    expect(existsSync(orphan)).toBe(true);
    const next = await jig({ ...r, attempt: 'a2', script: '#!/bin/sh\ntrue\n' });
    expect(next.result).toEqual({ ok: true, wall: {} });
    expect(existsSync(orphan)).toBe(false);
    expect(entries(r.noderole)).toEqual(['run-1.a2']);
  });

  it('a payload that is not an archive is an error, not a crash', async () => {
    const ran = await runRunner(Buffer.from('not a tar archive\n'.repeat(100)));
    expect(parseRunnerOutput(ran.stdout)).toMatchObject({ kind: 'error', code: 'payload' });
  });
});
