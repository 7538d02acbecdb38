/**
 * The script jig's run protocol (pure: no I/O). Model §4.2 describes the 2015 jig: mktemp a
 * directory on the node, copy the script and `attrs.json` there, run it, read data back, rm -rf.
 * We keep that shape with one SSH exec channel per run and a **constant** command line:
 *
 * 1. The client opens one exec channel running {@link RUNNER_COMMAND}. The command text never
 *    changes: no role data, name or path is ever interpolated into it.
 * 2. The client writes a ustar archive ({@link buildPayload}) to the channel's stdin: `script`,
 *    `input.json`, and one small file each for role, node, noderole, run number, timeout and
 *    attempt (which start of the run this is, see {@link attemptKey}).
 * 3. The runner (POSIX sh) makes `mktemp -d /tmp/crowbar-jig.XXXXXX` and unpacks the archive
 *    there. It keeps a journal per noderole on the node (`/var/lib/crowbar-jig/<noderole>/`), keyed
 *    by run number and attempt, so that an operator that restarts mid-run and sends the same run
 *    again re-attaches to it instead of running the script twice: the same attempt still running
 *    is waited for, the same attempt finished returns its stored result, and another attempt
 *    while one runs fails fast (`busy`). A new run's script runs in an executor detached from the
 *    SSH session (`setsid`), under `timeout`, with stdin `/dev/null`, stdout+stderr to a log file,
 *    and the environment `CROWBAR_INPUT`, `CROWBAR_OUTPUT`, `CROWBAR_ROLE`, `CROWBAR_NODE`,
 *    `CROWBAR_NODEROLE`, `CROWBAR_RUN`. Values reach the script only as files and environment.
 * 4. The runner's own stdout is machine-readable: `crowbar-jig/1 journal <new|attached|stored>`,
 *    `crowbar-jig/1 pid <pid>` while the run executes (the client uses it to cancel), then either
 *    `crowbar-jig/1 error <code> <message>` or `crowbar-jig/1 result <exit>
 *    <absent|sent|too-large|not-file> <outputBytes> <logBytes> <tailBytes>
 *    <exited|timed-out|cancelled>` followed by the output bytes (when `sent`) and the log tail.
 * 5. The executor stores that reply in the journal and removes the run's directory.
 *
 * The script's output file is optional: absent (or empty) means `{}`. Otherwise it must be a
 * JSON object of at most {@link LIMITS}.outputBytes.
 */
import { createHash } from 'node:crypto';
import type { Node } from '../../../generated/crowbar.ts';
import type { JigResult } from '../types.ts';

/** Size limits of the protocol, in bytes. */
export const LIMITS = {
  /** The script itself (the Role CRD allows 262144 characters inline). */
  scriptBytes: 256 * 1024,
  /** The input JSON (merged data); far above what fits in an etcd object. */
  inputBytes: 16 * 1024 * 1024,
  /** What the script may write to $CROWBAR_OUTPUT. */
  outputBytes: 1024 * 1024,
  /** The tail of the script's stdout+stderr kept for status and events. */
  logTailBytes: 4 * 1024,
} as const;

/** Seconds between the remote `timeout` sending SIGTERM and sending SIGKILL. */
export const KILL_AFTER_SECONDS = 10;

/** Default run timeout when the Role has none (the CRD's default). */
export const DEFAULT_TIMEOUT_SECONDS = 3600;

/** First word of every line the runner prints for the client. */
export const PROTOCOL_TAG = 'crowbar-jig/1';

/** Names the runner accepts for the lock file: Kubernetes object names. */
const NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * Where the runner keeps its journal on the node: one directory per noderole, holding the
 * journal lock, the run lock and the entry of the last run (see {@link RUNNER}). `/run` is the
 * fallback for a node whose /var/lib cannot be written.
 */
export const JOURNAL_DIRS = ['/var/lib/crowbar-jig', '/run/crowbar-jig'] as const;

/**
 * The executor, POSIX sh: the detached process that owns one run on the node. The runner starts it
 * under `setsid` (`sh -s`, the program on stdin as a here-document) with `$1` the run's directory,
 * `$2` its journal entry, `$3` the timeout, the `CROWBAR_*` environment, stdout on /dev/null,
 * stderr to the entry's `executor.err`, and two locks
 * inherited and held until it exits: fd 7 (the entry's lock, what attached runners wait on) and
 * fd 9 (the noderole's run lock, what makes a run of another attempt busy). It ignores SIGHUP and
 * SIGPIPE (a dropped SSH connection must not end a run the operator may re-adopt); SIGTERM (the
 * cancel) is passed to `timeout`, which signals the script's process group. When the script ends it
 * stores the reply in the entry (`result`, renamed into place whole) and says how it ended in
 * `state`, removes the run's directory and exits, which releases both locks.
 */
const EXECUTOR = `set -u
P=${PROTOCOL_TAG}
d=$1; e=$2; t=$3
tp=; c=0
cancel() { c=$((c + 1)); if [ -n "$tp" ]; then kill -TERM "$tp" 2>/dev/null; fi; }
trap cancel TERM
trap "" HUP INT PIPE
echo running >"$e/state"
w=143
if cd "$d/work" && [ "$c" -eq 0 ]; then
  s0=$(date +%s)
  timeout -k ${KILL_AFTER_SECONDS} "$t" "$d/script" </dev/null >"$d/log" 2>&1 7>&- 9>&- &
  tp=$!
  if [ "$c" -gt 0 ]; then kill -TERM "$tp" 2>/dev/null; fi
  while :; do
    k=$c
    wait "$tp"; w=$?
    if [ "$k" != "$c" ] && [ "$w" -gt 128 ] && kill -0 "$tp" 2>/dev/null; then continue; fi
    break
  done
fi
h=exited
if [ "$c" -gt 0 ]; then h=cancelled
elif [ "$w" = 124 ] || [ "$w" = 137 ]; then
  if [ $(($(date +%s) - s0)) -ge $((t - 1)) ]; then h=timed-out; fi
fi
: >>"$d/log"
st=absent; os=0
if [ -f "$d/output.json" ]; then
  head -c ${LIMITS.outputBytes + 1} "$d/output.json" >"$d/out.snap"
  os=$(($(wc -c <"$d/out.snap")))
  if [ "$os" -gt ${LIMITS.outputBytes} ]; then st=too-large; os=$(($(wc -c <"$d/output.json"))); else st=sent; fi
elif [ -e "$d/output.json" ] || [ -L "$d/output.json" ]; then st=not-file
fi
ls=$(($(wc -c <"$d/log")))
tail -c ${LIMITS.logTailBytes} "$d/log" >"$d/tail"
ts=$(($(wc -c <"$d/tail")))
{
  echo "$P result $w $st $os $ls $ts $h"
  if [ "$st" = sent ]; then cat "$d/out.snap"; fi
  cat "$d/tail"
} >"$e/result.tmp"
echo "$h $w" >"$e/state"
mv -f "$e/result.tmp" "$e/result"
cd /
rm -rf "$d"
`;

/**
 * The runner, POSIX sh: what the SSH session runs. It must not contain a single quote: it is
 * passed as `/bin/sh -c '...'` so that it runs under sh whatever root's login shell is.
 *
 * It unpacks the payload, then decides under the noderole's journal lock (a short `flock`):
 * - the journal has a finished entry for this attempt (`run-<number>.<attempt>` with a `result`):
 *   it prints that stored result and never runs the script again;
 * - the entry exists but has no result: the execution is still going on (a previous session, or
 *   a previous operator, started it): it attaches, waiting on the entry's lock;
 * - no entry: it takes the noderole's run lock without waiting (held: another attempt is running,
 *   `busy`), removes older entries and whatever run directory a killed executor left (the journal
 *   keeps the last run only; no executor of the noderole is alive then), creates the entry and
 *   starts the {@link EXECUTOR} detached from the session, then waits on the entry's lock like an
 *   attached runner.
 * Once the entry's lock is free it prints the entry's result; an entry with no result then means
 * the executor was killed (`lost`).
 */
const RUNNER = `set -u
P=${PROTOCOL_TAG}
h=
d=$(mktemp -d /tmp/crowbar-jig.XXXXXX) || { echo "$P error mktemp cannot create a directory under /tmp"; exit 70; }
cleanup() { if [ -z "$h" ]; then rm -rf "$d"; fi; }
trap cleanup EXIT
trap "exit 129" HUP
trap "exit 143" TERM
trap "exit 141" PIPE
if ! tar -x -f - -C "$d" 2>"$d/tar.err"; then echo "$P error payload cannot unpack the run payload: $(head -c 300 "$d/tar.err" | tr "\\n" " ")"; exit 70; fi
for f in script input.json role node noderole run timeout attempt; do
  [ -f "$d/$f" ] || { echo "$P error payload the run payload has no $f"; exit 70; }
done
nr=; t=; n=; a=
read -r nr <"$d/noderole"; read -r t <"$d/timeout"; read -r n <"$d/run"; read -r a <"$d/attempt"
case $nr in ""|[!a-z0-9]*|*[!a-z0-9.-]*) echo "$P error payload bad noderole name"; exit 70;; esac
case $t in ""|*[!0-9]*) echo "$P error payload bad timeout"; exit 70;; esac
case $n in ""|*[!0-9]*) echo "$P error payload bad run number"; exit 70;; esac
case $a in ""|*[!0-9a-f]*) echo "$P error payload bad attempt"; exit 70;; esac
[ \${#a} -le 64 ] || { echo "$P error payload bad attempt"; exit 70; }
for c in flock timeout tail head wc setsid; do
  command -v $c >/dev/null 2>&1 || { echo "$P error dependency the node has no $c command (install util-linux and coreutils)"; exit 70; }
done
j=${JOURNAL_DIRS[0]}
[ -d "$j" ] || mkdir -p -m 700 "$j" 2>/dev/null || j=${JOURNAL_DIRS[1]}
s="$j/$nr"
[ -d "$s" ] || mkdir -p -m 700 "$s" 2>/dev/null || { echo "$P error journal cannot create $s"; exit 70; }
e="$s/run-$n.$a"
exec 8>"$s/journal.lock"
flock -w 30 8 || { echo "$P error lock timed out waiting for $s/journal.lock"; exit 70; }
if [ -f "$e/result" ]; then
  exec 8>&-
  echo "$P journal stored"
  cat "$e/result"
  exit 0
fi
if [ -d "$e" ]; then
  m=attached
else
  exec 9>"$s/run.lock"
  flock -n 9 || { echo "$P error busy another run of noderole $nr holds $s/run.lock"; exit 75; }
  for o in "$s"/run-*; do
    [ "$o" != "$e" ] && [ -d "$o" ] || continue
    if [ -f "$o/dir" ]; then read -r x <"$o/dir"; case $x in /tmp/crowbar-jig.*) rm -rf "$x";; esac; fi
    rm -rf "$o"
  done
  mkdir -m 700 "$e" || { echo "$P error journal cannot create $e"; exit 70; }
  echo "$d" >"$e/dir"
  exec 7>"$e/lock"
  flock -n 7 || { echo "$P error journal cannot lock $e/lock"; exit 70; }
  echo starting >"$e/state"
  chmod 700 "$d/script"
  mkdir "$d/work"
  CROWBAR_INPUT="$d/input.json"
  CROWBAR_OUTPUT="$d/output.json"
  CROWBAR_ROLE=$(cat "$d/role")
  CROWBAR_NODE=$(cat "$d/node")
  CROWBAR_NODEROLE=$nr
  CROWBAR_RUN=$n
  export CROWBAR_INPUT CROWBAR_OUTPUT CROWBAR_ROLE CROWBAR_NODE CROWBAR_NODEROLE CROWBAR_RUN
  h=1
  setsid /bin/sh -s "$d" "$e" "$t" >/dev/null 2>"$e/executor.err" 8>&- <<"CROWBAR_EXECUTOR" &
${EXECUTOR}CROWBAR_EXECUTOR
  echo $! >"$e/pid"
  exec 7>&- 9>&-
  m=new
fi
exec 8>&-
echo "$P journal $m"
if [ -f "$e/pid" ]; then read -r p <"$e/pid"; echo "$P pid $p"; fi
if [ -f "$e/lock" ]; then exec 7<"$e/lock"; flock -s 7; exec 7<&-; fi
if [ -f "$e/result" ]; then cat "$e/result"; exit 0; fi
echo "$P error lost run $n of noderole $nr ended on this node without a result: its executor was killed (was the node rebooted?)"
exit 70
`;

/** The one command the client runs for a script run. Constant: data goes on stdin only. */
export const RUNNER_COMMAND = `/bin/sh -c '${RUNNER}'`;

/**
 * Cancels a run: stdin carries the pid the runner reported (the run's executor). The executor
 * passes SIGTERM to `timeout`, which signals the script's group, and records the run as cancelled.
 */
export const CANCEL_COMMAND = `/bin/sh -c 'read -r p; case "$p" in ""|*[!0-9]*) exit 2;; esac; kill -TERM "$p" 2>/dev/null; exit 0'`;

/** The aliveness probe (§10.1: "SSH `echo alive` as root"). */
export const ALIVE_COMMAND = 'echo alive';
export const ALIVE_REPLY = 'alive';

// ---------------------------------------------------------------------------------------------
// Requests and payload

export interface RunRequest {
  script: string;
  input: Record<string, unknown>;
  role: string;
  node: string;
  noderole: string;
  run: number;
  timeoutSeconds: number;
  /** Which start of run `run` this is: lower-case hex, at most 64 characters (see {@link attemptKey}). */
  attempt: string;
}

/**
 * The journal key of a run's start, beside its run number. A run number alone does not name one
 * execution: the number is runCount + 1 and runCount counts successes only, so a failed, cancelled
 * or retried run starts again under the same number. What stays the same when an operator
 * re-adopts a run after a restart, and only then, is the NodeRole's `status.run` as written when
 * the run started: its `id` and `started` time. The key is a digest of those when `status.run` is
 * the run being sent; otherwise `random()` (a run that will never be re-attached to).
 */
export function attemptKey(
  current:
    | { id?: string | undefined; number?: number | undefined; started?: string | undefined }
    | undefined,
  number: number,
  random: () => string,
): string {
  if (current?.id && current.started && current.number === number) {
    return createHash('sha256')
      .update(`${current.id}\n${current.started}`)
      .digest('hex')
      .slice(0, 16);
  }
  return random();
}

const ATTEMPT_RE = /^[0-9a-f]{1,64}$/;

/** Why a request cannot be sent, or undefined when it is fine. Checked before connecting. */
export function validateRequest(r: RunRequest): string | undefined {
  const scriptBytes = Buffer.byteLength(r.script, 'utf8');
  if (scriptBytes === 0) return `the script of role ${r.role} is empty`;
  if (scriptBytes > LIMITS.scriptBytes) {
    return `the script of role ${r.role} is ${scriptBytes} bytes, over the ${formatBytes(LIMITS.scriptBytes)} limit`;
  }
  if (!NAME_RE.test(r.noderole)) return `noderole name ${JSON.stringify(r.noderole)} is not valid`;
  if (!Number.isInteger(r.timeoutSeconds) || r.timeoutSeconds < 1 || r.timeoutSeconds > 86400) {
    return `timeout ${r.timeoutSeconds} s is out of range (1..86400)`;
  }
  if (!Number.isInteger(r.run) || r.run < 0) return `run number ${r.run} is not valid`;
  if (!ATTEMPT_RE.test(r.attempt)) return `run attempt ${JSON.stringify(r.attempt)} is not valid`;
  return undefined;
}

/** The archive written to the runner's stdin. Throws when the input is over its limit. */
export function buildPayload(r: RunRequest): Buffer {
  const input = Buffer.from(JSON.stringify(r.input), 'utf8');
  if (input.length > LIMITS.inputBytes) {
    throw new Error(
      `the run input is ${input.length} bytes, over the ${formatBytes(LIMITS.inputBytes)} limit`,
    );
  }
  const mtime = 0x60000000; // a fixed, plausible time: keeps the payload deterministic
  return tar(
    [
      { name: 'script', mode: 0o700, data: Buffer.from(r.script, 'utf8') },
      { name: 'input.json', mode: 0o600, data: input },
      { name: 'role', mode: 0o600, data: Buffer.from(r.role, 'utf8') },
      { name: 'node', mode: 0o600, data: Buffer.from(r.node, 'utf8') },
      { name: 'noderole', mode: 0o600, data: Buffer.from(r.noderole, 'utf8') },
      { name: 'run', mode: 0o600, data: Buffer.from(String(r.run), 'utf8') },
      { name: 'timeout', mode: 0o600, data: Buffer.from(String(r.timeoutSeconds), 'utf8') },
      { name: 'attempt', mode: 0o600, data: Buffer.from(r.attempt, 'utf8') },
    ],
    mtime,
  );
}

export interface TarEntry {
  name: string;
  mode: number;
  data: Buffer;
}

const BLOCK = 512;
const RECORD = 20 * BLOCK;

/** A minimal POSIX ustar archive of regular files owned by root (names under 100 bytes). */
export function tar(entries: readonly TarEntry[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    if (name.length === 0 || name.length > 99 || e.name.includes('/')) {
      throw new Error(`tar: bad entry name ${JSON.stringify(e.name)}`);
    }
    const h = Buffer.alloc(BLOCK);
    name.copy(h, 0);
    octal(h, 100, 8, e.mode);
    octal(h, 108, 8, 0);
    octal(h, 116, 8, 0);
    octal(h, 124, 12, e.data.length);
    octal(h, 136, 12, mtime);
    h.fill(0x20, 148, 156);
    h.write('0', 156, 'ascii');
    h.write('ustar\0', 257, 'ascii');
    h.write('00', 263, 'ascii');
    h.write('root', 265, 'ascii');
    h.write('root', 297, 'ascii');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
    parts.push(h, e.data, Buffer.alloc((BLOCK - (e.data.length % BLOCK)) % BLOCK));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  const body = Buffer.concat(parts);
  // GNU tar reads whole records; pad so it never sees a short final record.
  return Buffer.concat([body, Buffer.alloc((RECORD - (body.length % RECORD)) % RECORD)]);
}

function octal(h: Buffer, off: number, len: number, v: number): void {
  h.write(`${v.toString(8).padStart(len - 1, '0')}\0`, off, 'ascii');
}

// ---------------------------------------------------------------------------------------------
// What the runner prints

export type OutputState = 'absent' | 'sent' | 'too-large' | 'not-file';

/** What the runner found in the node's journal: a run it started, one going on, one finished. */
export type JournalState = 'new' | 'attached' | 'stored';

/** How the script ended, as the node's executor saw it. */
export type RunEnd = 'exited' | 'timed-out' | 'cancelled';

export type RunnerReport =
  | { kind: 'error'; code: string; message: string; pid?: number; journal?: JournalState }
  | {
      kind: 'result';
      pid?: number;
      journal?: JournalState;
      exitCode: number;
      /** Absent from a runner that does not say (older protocol text in tests). */
      end?: RunEnd;
      output: OutputState;
      outputBytes: number;
      /** The output file's bytes, when `output` is `sent`. */
      outputData?: Buffer;
      logBytes: number;
      tail: Buffer;
    }
  /** The stream ended (or was cut) before a complete error or result. */
  | { kind: 'incomplete'; pid?: number; journal?: JournalState; detail: string };

/** Upper bound of what a well-behaved runner prints; the client stops reading past it. */
export const MAX_RUNNER_STDOUT = LIMITS.outputBytes + LIMITS.logTailBytes + 64 * 1024;

const TAG_PREFIX = Buffer.from(`${PROTOCOL_TAG} `);

/** The pid from the runner's `pid` line, once it has arrived. */
export function parsePid(stdout: Buffer): number | undefined {
  for (const line of tagLines(stdout)) {
    const m = /^pid (\d+)$/.exec(line.text);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/** Parses everything the runner printed. Lines before the first tagged line (a chatty
 * login shell) are skipped. */
export function parseRunnerOutput(stdout: Buffer): RunnerReport {
  let pid: number | undefined;
  let journal: JournalState | undefined;
  const seen = <T extends object>(o: T): T & { pid?: number; journal?: JournalState } => ({
    ...o,
    ...(pid === undefined ? {} : { pid }),
    ...(journal === undefined ? {} : { journal }),
  });
  for (const line of tagLines(stdout)) {
    let m = /^pid (\d+)$/.exec(line.text);
    if (m) {
      pid = Number(m[1]);
      continue;
    }
    m = /^journal (new|attached|stored)$/.exec(line.text);
    if (m) {
      journal = m[1] as JournalState;
      continue;
    }
    m = /^error ([a-z-]+) ?(.*)$/s.exec(line.text);
    if (m) return seen({ kind: 'error', code: m[1] ?? '', message: m[2] ?? '' });
    m =
      /^result (\d+) (absent|sent|too-large|not-file) (\d+) (\d+) (\d+)(?: (exited|timed-out|cancelled))?$/.exec(
        line.text,
      );
    if (m) {
      const output = m[2] as OutputState;
      const outputBytes = Number(m[3]);
      const tailBytes = Number(m[5]);
      const sentBytes = output === 'sent' ? outputBytes : 0;
      const rest = stdout.subarray(line.end);
      if (rest.length < sentBytes + tailBytes) {
        return seen({
          kind: 'incomplete',
          detail: `the result was cut short (${rest.length} of ${sentBytes + tailBytes} bytes)`,
        });
      }
      const report: RunnerReport = {
        kind: 'result',
        exitCode: Number(m[1]),
        output,
        outputBytes,
        logBytes: Number(m[4]),
        tail: rest.subarray(sentBytes, sentBytes + tailBytes),
      };
      if (m[6] !== undefined) report.end = m[6] as RunEnd;
      if (output === 'sent') report.outputData = rest.subarray(0, sentBytes);
      return seen(report);
    }
    // A forged or garbled line may be long: the message quotes its start only.
    const quoted = line.text.length > 200 ? `${line.text.slice(0, 200)}...` : line.text;
    return seen({ kind: 'incomplete', detail: `unexpected line from the runner: ${quoted}` });
  }
  return seen({ kind: 'incomplete' as const, detail: 'the runner printed no result' });
}

interface TagLine {
  text: string;
  /** Offset just past the line's newline. */
  end: number;
}

/** Complete lines that start with the protocol tag, in order, stopping after a result line. */
function* tagLines(buf: Buffer): Generator<TagLine> {
  let pos = 0;
  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0) return;
    const line = buf.subarray(pos, nl);
    pos = nl + 1;
    if (line.subarray(0, TAG_PREFIX.length).equals(TAG_PREFIX)) {
      const text = line.subarray(TAG_PREFIX.length).toString('utf8');
      yield { text, end: pos };
      if (text.startsWith('result ') || text.startsWith('error ')) return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Outcome

/** The data a script wrote: absent or empty means {}; otherwise a JSON object. */
export function parseWall(
  data: Buffer | undefined,
): { ok: true; wall: Record<string, unknown> } | { ok: false; message: string } {
  if (data === undefined) return { ok: true, wall: {} };
  const text = data.toString('utf8');
  if (text.trim() === '') return { ok: true, wall: {} };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return { ok: false, message: `it is not valid JSON (${(e as Error).message})` };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    const what = v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`;
    return { ok: false, message: `it is ${what}, not a JSON object` };
  }
  if (depthOver(v, MAX_WALL_DEPTH)) {
    return {
      ok: false,
      message: `it is nested more than ${MAX_WALL_DEPTH} levels deep (keep data at most ${MAX_WALL_DEPTH} levels deep)`,
    };
  }
  return { ok: true, wall: v as Record<string, unknown> };
}

/**
 * Deepest nesting of objects and arrays a wall may have: the admission webhook's limit on the
 * data people write (webhooks/limits.ts), since walls flow into children's input the same way.
 * JSON.parse takes any depth, but JSON.stringify and deep comparisons recurse: a wall 100,000
 * levels deep would break every later status write of the noderole.
 */
export const MAX_WALL_DEPTH = 32;

/** Whether `v` nests objects/arrays deeper than `max` (iterative: any depth is safe to check). */
export function depthOver(v: unknown, max: number): boolean {
  const stack: { v: unknown; d: number }[] = [{ v, d: 0 }];
  for (let it = stack.pop(); it !== undefined; it = stack.pop()) {
    if (typeof it.v !== 'object' || it.v === null) continue;
    if (it.d + 1 > max) return true;
    for (const x of Object.values(it.v)) stack.push({ v: x, d: it.d + 1 });
  }
  return false;
}

/**
 * The last `limit` bytes of a log as text, starting at a line boundary when it was cut, without
 * a trailing newline. Invalid UTF-8 is replaced, never thrown on.
 */
export function logTail(buf: Buffer, limit: number = LIMITS.logTailBytes): string {
  let b = buf;
  let cut = false;
  if (b.length > limit) {
    b = b.subarray(b.length - limit);
    cut = true;
  }
  if (cut) {
    const nl = b.indexOf(0x0a);
    if (nl >= 0 && nl < b.length - 1) b = b.subarray(nl + 1);
  }
  return b.toString('utf8').replace(/\n+$/, '');
}

export interface Outcome {
  role: string;
  node: string;
  noderole: string;
  timeoutSeconds: number;
  /** Client-measured duration of the exec, for telling a timeout from a script exiting 124. */
  elapsedMs: number;
  /** The client gave up waiting (its own deadline) or cancelled the run. */
  cutOff?: 'deadline' | 'cancelled';
  /** The runner's stderr (sh or tar errors), for diagnostics. */
  stderr?: Buffer;
}

/** Turns the runner's report into the jig's result (§3.3: error with the log tail in status). */
export function interpret(report: RunnerReport, o: Outcome): JigResult {
  const who = `script of role ${o.role} on node ${o.node}`;
  if (report.kind === 'error') {
    if (report.code === 'busy') {
      return {
        ok: false,
        message: `another run of noderole ${o.noderole} is in progress on node ${o.node} (${report.message}); not starting a second one`,
      };
    }
    if (report.code === 'lost') {
      return { ok: false, message: `the ${who} cannot be resumed: ${report.message}; retry it` };
    }
    return { ok: false, message: `cannot run the ${who}: ${report.message}` };
  }
  if (report.kind === 'incomplete') {
    const stderr = o.stderr ? logTail(o.stderr, 1024) : '';
    if (o.cutOff === 'deadline') {
      return { ok: false, message: `${who} timed out after ${o.timeoutSeconds} s` };
    }
    const extra = stderr === '' ? '' : `: ${stderr}`;
    return {
      ok: false,
      message: `the ${who} ended without a result (${report.detail})${extra}`,
    };
  }
  const tail = logTail(report.tail);
  const withTail = (r: { ok: false; message: string; exitCode?: number }): JigResult =>
    tail === '' ? r : { ...r, logTail: tail };
  // The node's executor says how the script ended; a runner that does not say is judged by the
  // client's clock (124 is also what a script may exit with on its own).
  const timedOut =
    o.cutOff === 'deadline' ||
    report.end === 'timed-out' ||
    (report.end === undefined &&
      (report.exitCode === 124 || report.exitCode === 128 + 9) &&
      o.elapsedMs >= o.timeoutSeconds * 1000 - 1000);
  if (timedOut) {
    return withTail({
      ok: false,
      message: `${who} timed out after ${o.timeoutSeconds} s and was killed`,
      exitCode: report.exitCode,
    });
  }
  if (o.cutOff === 'cancelled' || report.end === 'cancelled') {
    return withTail({ ok: false, message: `${who} was cancelled`, exitCode: report.exitCode });
  }
  if (report.exitCode !== 0) {
    return withTail({
      ok: false,
      message: `${who} exited with status ${report.exitCode}`,
      exitCode: report.exitCode,
    });
  }
  if (report.output === 'too-large') {
    return withTail({
      ok: false,
      message: `${who} wrote ${report.outputBytes} bytes to $CROWBAR_OUTPUT, over the ${formatBytes(LIMITS.outputBytes)} limit`,
    });
  }
  if (report.output === 'not-file') {
    return withTail({
      ok: false,
      message: `${who} left $CROWBAR_OUTPUT as something other than a regular file`,
    });
  }
  const parsed = parseWall(report.outputData);
  if (!parsed.ok) {
    return withTail({
      ok: false,
      message: `${who} wrote output that the jig cannot use: ${parsed.message}; write a JSON object to $CROWBAR_OUTPUT`,
    });
  }
  return tail === ''
    ? { ok: true, wall: parsed.wall }
    : { ok: true, wall: parsed.wall, logTail: tail };
}

// ---------------------------------------------------------------------------------------------
// Host keys (trust on first use)

/** OpenSSH's fingerprint of a public key blob: `SHA256:` + unpadded base64 of its SHA-256. */
export function fingerprint(keyBlob: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

export type HostKeyDecision =
  | { accept: true; /** A first-use key to record on the Node's status. */ record?: string }
  | { accept: false; message: string };

/**
 * Trust on first use: no recorded key → accept and record; same key → accept; another key →
 * refuse until an admin clears the record.
 */
export function decideHostKey(
  node: string,
  expected: string | undefined,
  actual: string,
): HostKeyDecision {
  if (expected === undefined || expected === '') return { accept: true, record: actual };
  if (expected === actual) return { accept: true };
  return {
    accept: false,
    message: `host key of ${node} changed (was ${expected}, now ${actual}): if the node was reinstalled, clear status.sshHostKey on the Node to trust the new key`,
  };
}

// ---------------------------------------------------------------------------------------------
// Addresses

/** An address without its prefix length (`192.168.124.10/24` → `192.168.124.10`). */
export function stripPrefix(address: string): string {
  const slash = address.indexOf('/');
  return slash < 0 ? address : address.slice(0, slash);
}

/**
 * The node's admin addresses in status order, without prefix lengths. `isAdmin` tells which
 * networks are admin (the Network's category); by default the network named `admin`.
 */
export function adminAddresses(
  node: Readonly<Node>,
  isAdmin: (network: string) => boolean = (n) => n === 'admin',
): string[] {
  return (node.status?.addresses ?? [])
    .filter((a) => isAdmin(a.network))
    .map((a) => stripPrefix(a.address))
    .filter((a) => a !== '');
}

/** The first admin address, as the script jig's default `resolveAddress`. */
export function firstAdminAddress(
  node: Readonly<Node>,
  isAdmin?: (network: string) => boolean,
): string | undefined {
  return adminAddresses(node, isAdmin)[0];
}

/** 262144 → "256 KiB". */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}
