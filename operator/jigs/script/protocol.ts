/**
 * The script jig's run protocol (pure: no I/O). Model §4.2 describes the 2015 jig: mktemp a
 * directory on the node, copy the script and `attrs.json` there, run it, read data back, rm -rf.
 * We keep that shape with one SSH exec channel per run and a **constant** command line:
 *
 * 1. The client opens one exec channel running {@link RUNNER_COMMAND}. The command text never
 *    changes: no role data, name or path is ever interpolated into it.
 * 2. The client writes a ustar archive ({@link buildPayload}) to the channel's stdin: `script`,
 *    `input.json`, and one small file each for role, node, noderole, run number and timeout.
 * 3. The runner (POSIX sh) makes `mktemp -d /tmp/crowbar-jig.XXXXXX`, unpacks the archive there,
 *    takes a per-noderole `flock` (a second concurrent run of the same noderole on the node fails
 *    fast), and runs the script under `timeout` with stdin `/dev/null`, stdout+stderr to a log
 *    file, and the environment `CROWBAR_INPUT`, `CROWBAR_OUTPUT`, `CROWBAR_ROLE`, `CROWBAR_NODE`,
 *    `CROWBAR_NODEROLE`, `CROWBAR_RUN`. Values reach the script only as files and environment.
 * 4. The runner's own stdout is machine-readable: `crowbar-jig/1 pid <pid>` once the script starts
 *    (the client uses it to cancel), then either `crowbar-jig/1 error <code> <message>` or
 *    `crowbar-jig/1 result <exit> <absent|sent|too-large|not-file> <outputBytes> <logBytes>
 *    <tailBytes>` followed by the output bytes (when `sent`) and the log tail bytes.
 * 5. The runner removes the directory on exit.
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
 * The runner, POSIX sh. It must not contain a single quote: it is passed as `/bin/sh -c '...'`
 * so that it runs under sh whatever root's login shell is.
 */
const RUNNER = `set -u
P=${PROTOCOL_TAG}
pid=
d=$(mktemp -d /tmp/crowbar-jig.XXXXXX) || { echo "$P error mktemp cannot create a directory under /tmp"; exit 70; }
stop() { if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; }
trap "rm -rf \\"\\$d\\"" EXIT
trap "stop; exit 129" HUP
trap "stop; exit 143" TERM
trap "stop; exit 141" PIPE
if ! tar -x -f - -C "$d" 2>"$d/tar.err"; then echo "$P error payload cannot unpack the run payload: $(head -c 300 "$d/tar.err" | tr "\\n" " ")"; exit 70; fi
for f in script input.json role node noderole run timeout; do
  [ -f "$d/$f" ] || { echo "$P error payload the run payload has no $f"; exit 70; }
done
nr=$(cat "$d/noderole"); t=$(cat "$d/timeout"); n=$(cat "$d/run")
case $nr in ""|*[!a-z0-9.-]*) echo "$P error payload bad noderole name"; exit 70;; esac
case $t in ""|*[!0-9]*) echo "$P error payload bad timeout"; exit 70;; esac
case $n in ""|*[!0-9]*) echo "$P error payload bad run number"; exit 70;; esac
for c in flock timeout tail head wc; do
  command -v $c >/dev/null 2>&1 || { echo "$P error dependency the node has no $c command (install util-linux and coreutils)"; exit 70; }
done
l=/tmp; if [ -d /var/lock ] && [ -w /var/lock ]; then l=/var/lock; fi
lk="$l/crowbar-jig-$nr.lock"
exec 9>"$lk" || { echo "$P error lock cannot open $lk"; exit 70; }
flock -n 9 || { echo "$P error busy another run of noderole $nr holds $lk"; exit 75; }
chmod 700 "$d/script"
mkdir "$d/work"
CROWBAR_INPUT="$d/input.json"
CROWBAR_OUTPUT="$d/output.json"
CROWBAR_ROLE=$(cat "$d/role")
CROWBAR_NODE=$(cat "$d/node")
CROWBAR_NODEROLE=$nr
CROWBAR_RUN=$n
export CROWBAR_INPUT CROWBAR_OUTPUT CROWBAR_ROLE CROWBAR_NODE CROWBAR_NODEROLE CROWBAR_RUN
cd "$d/work"
timeout -k ${KILL_AFTER_SECONDS} "$t" "$d/script" </dev/null >"$d/log" 2>&1 9>&- &
pid=$!
echo "$P pid $pid"
wait "$pid"; rc=$?
pid=
st=absent; os=0
if [ -f "$d/output.json" ]; then
  head -c ${LIMITS.outputBytes + 1} "$d/output.json" >"$d/out.snap"
  os=$(wc -c <"$d/out.snap" | tr -d " ")
  if [ "$os" -gt ${LIMITS.outputBytes} ]; then st=too-large; os=$(wc -c <"$d/output.json" | tr -d " "); else st=sent; fi
elif [ -e "$d/output.json" ] || [ -L "$d/output.json" ]; then st=not-file
fi
ls=$(wc -c <"$d/log" | tr -d " ")
tail -c ${LIMITS.logTailBytes} "$d/log" >"$d/tail"
ts=$(wc -c <"$d/tail" | tr -d " ")
echo "$P result $rc $st $os $ls $ts"
if [ "$st" = sent ]; then cat "$d/out.snap"; fi
cat "$d/tail"
`;

/** The one command the client runs for a script run. Constant: data goes on stdin only. */
export const RUNNER_COMMAND = `/bin/sh -c '${RUNNER}'`;

/** Cancels a run: stdin carries the pid the runner reported. `timeout` then signals its group. */
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
}

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

export type RunnerReport =
  | { kind: 'error'; code: string; message: string; pid?: number }
  | {
      kind: 'result';
      pid?: number;
      exitCode: number;
      output: OutputState;
      outputBytes: number;
      /** The output file's bytes, when `output` is `sent`. */
      outputData?: Buffer;
      logBytes: number;
      tail: Buffer;
    }
  /** The stream ended (or was cut) before a complete error or result. */
  | { kind: 'incomplete'; pid?: number; detail: string };

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
  for (const line of tagLines(stdout)) {
    const withPid = <T extends object>(o: T): T & { pid?: number } =>
      pid === undefined ? o : { ...o, pid };
    let m = /^pid (\d+)$/.exec(line.text);
    if (m) {
      pid = Number(m[1]);
      continue;
    }
    m = /^error ([a-z-]+) ?(.*)$/s.exec(line.text);
    if (m) return withPid({ kind: 'error', code: m[1] ?? '', message: m[2] ?? '' });
    m = /^result (\d+) (absent|sent|too-large|not-file) (\d+) (\d+) (\d+)$/.exec(line.text);
    if (m) {
      const output = m[2] as OutputState;
      const outputBytes = Number(m[3]);
      const tailBytes = Number(m[5]);
      const sentBytes = output === 'sent' ? outputBytes : 0;
      const rest = stdout.subarray(line.end);
      if (rest.length < sentBytes + tailBytes) {
        return withPid({
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
      if (output === 'sent') report.outputData = rest.subarray(0, sentBytes);
      return withPid(report);
    }
    return withPid({ kind: 'incomplete', detail: `unexpected line from the runner: ${line.text}` });
  }
  const base = { kind: 'incomplete' as const, detail: 'the runner printed no result' };
  return pid === undefined ? base : { ...base, pid };
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
  return { ok: true, wall: v as Record<string, unknown> };
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
  const timedOut =
    o.cutOff === 'deadline' ||
    ((report.exitCode === 124 || report.exitCode === 128 + 9) &&
      o.elapsedMs >= o.timeoutSeconds * 1000 - 1000);
  if (timedOut) {
    return withTail({
      ok: false,
      message: `${who} timed out after ${o.timeoutSeconds} s and was killed`,
      exitCode: report.exitCode,
    });
  }
  if (o.cutOff === 'cancelled') {
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
