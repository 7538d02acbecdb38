import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Node } from '../../../generated/crowbar.ts';
import {
  LIMITS,
  MAX_RUNNER_STDOUT,
  PROTOCOL_TAG,
  RUNNER_COMMAND,
  adminAddresses,
  attemptKey,
  buildPayload,
  decideHostKey,
  fingerprint,
  firstAdminAddress,
  formatBytes,
  interpret,
  logTail,
  parsePid,
  parseRunnerOutput,
  parseWall,
  depthOver,
  stripPrefix,
  tar,
  validateRequest,
  type Outcome,
  type RunRequest,
  type RunnerReport,
} from './protocol.ts';

const T = PROTOCOL_TAG;
const b = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('fingerprint', () => {
  it('matches ssh-keygen -l -E sha256 for an ed25519 key', () => {
    // ssh-keygen -t ed25519 ... ; ssh-keygen -l -E sha256 -f key.pub
    const blob = Buffer.from(
      'AAAAC3NzaC1lZDI1NTE5AAAAIB9inhRl4KAIj0R09bLX7NvEYvq5f3t0RloVM1XC1hX3',
      'base64',
    );
    expect(fingerprint(blob)).toBe('SHA256:5pCHZ5JH1r4rMs1S+Q5C9uDpJxOLWGW6RtrC9pVo7Bc');
  });

  it('never has base64 padding', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (k) => {
        const f = fingerprint(k);
        expect(f).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
      }),
    );
  });
});

describe('decideHostKey (TOFU)', () => {
  it('accepts and records an unknown key', () => {
    expect(decideHostKey('n1', undefined, 'SHA256:a')).toEqual({
      accept: true,
      record: 'SHA256:a',
    });
    expect(decideHostKey('n1', '', 'SHA256:a')).toEqual({ accept: true, record: 'SHA256:a' });
  });
  it('accepts the recorded key without recording again', () => {
    expect(decideHostKey('n1', 'SHA256:a', 'SHA256:a')).toEqual({ accept: true });
  });
  it('refuses a changed key and says how to trust the new one', () => {
    const d = decideHostKey('node1.example', 'SHA256:old', 'SHA256:new');
    expect(d.accept).toBe(false);
    expect(!d.accept && d.message).toBe(
      'host key of node1.example changed (was SHA256:old, now SHA256:new): if the node was reinstalled, clear status.sshHostKey on the Node to trust the new key',
    );
  });
});

describe('parseWall', () => {
  it.each([
    ['absent', undefined, {}],
    ['empty', '', {}],
    ['whitespace', ' \n', {}],
    ['object', '{"a":{"b":[1,2]}}', { a: { b: [1, 2] } }],
  ])('%s → wall', (_n, input, wall) => {
    expect(parseWall(input === undefined ? undefined : b(input))).toEqual({ ok: true, wall });
  });
  it.each([
    ['array', '[1]', 'an array'],
    ['null', 'null', 'null'],
    ['number', '42', 'a number'],
    ['string', '"x"', 'a string'],
    ['garbage', '{"a":', 'not valid JSON'],
    ['100,000 levels deep', `{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`, '32 levels'],
    ['33 levels deep', `${'{"a":'.repeat(33)}1${'}'.repeat(33)}`, 'nested more than 32'],
  ])('%s is refused', (_n, input, why) => {
    const r = parseWall(b(input));
    expect(r.ok).toBe(false);
    expect(!r.ok && r.message).toContain(why);
  });
  it('takes a wall exactly 32 levels deep', () => {
    const r = parseWall(b(`${'{"a":'.repeat(32)}1${'}'.repeat(32)}`));
    expect(r.ok).toBe(true);
  });
});

describe('depthOver', () => {
  it.each([
    [1, 0, false],
    [{}, 0, true],
    [{}, 1, false],
    [[[[]]], 2, true],
    [[[[]]], 3, false],
    [{ a: 1, b: { c: [1] } }, 3, false],
    [{ a: 1, b: { c: [1] } }, 2, true],
  ])('%j deeper than %i: %s', (v, max, over) => {
    expect(depthOver(v, max)).toBe(over);
  });
});

describe('parseRunnerOutput with forged lines', () => {
  it('quotes only the start of a long unexpected line', () => {
    const r = parseRunnerOutput(b(`crowbar-jig/1 ${'forged '.repeat(100_000)}\n`));
    expect(r.kind).toBe('incomplete');
    expect(r.kind === 'incomplete' && r.detail.length).toBeLessThan(300);
  });
});

describe('logTail', () => {
  it('keeps short logs whole, without the trailing newline', () => {
    expect(logTail(b('a\nb\n'))).toBe('a\nb');
  });
  it('cuts to the limit at a line boundary', () => {
    const log = b(`${'x'.repeat(100)}\nline2\nline3\n`);
    expect(logTail(log, 15)).toBe('line2\nline3');
  });
  it('keeps a partial line when the tail has no newline at all', () => {
    expect(logTail(b('abcdefghij'), 4)).toBe('ghij');
  });
  it('never exceeds the limit and never throws on binary', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 10_000 }),
        fc.integer({ min: 1, max: 5000 }),
        (u, n) => {
          const t = logTail(Buffer.from(u), n);
          expect(Buffer.byteLength(t, 'utf8')).toBeLessThanOrEqual(n * 3);
        },
      ),
    );
  });
  it('default limit is 4 KiB', () => {
    const lines = Array.from({ length: 2000 }, (_, i) => `line ${i}`).join('\n');
    const t = logTail(b(lines));
    expect(Buffer.byteLength(t)).toBeLessThanOrEqual(LIMITS.logTailBytes);
    expect(t.endsWith('line 1999')).toBe(true);
    expect(t.split('\n')[0]).toMatch(/^line \d+$/);
  });
});

describe('parseRunnerOutput', () => {
  const result = (rc: number, st: string, out: string, tail: string): Buffer =>
    b(
      `${T} pid 42\n${T} result ${rc} ${st} ${Buffer.byteLength(out)} 999 ${Buffer.byteLength(tail)}\n${out}${tail}`,
    );

  it('reads pid, exit, output and tail', () => {
    const r = parseRunnerOutput(result(0, 'sent', '{"a":1}', 'log\n'));
    expect(r).toMatchObject({
      kind: 'result',
      pid: 42,
      exitCode: 0,
      output: 'sent',
      logBytes: 999,
    });
    expect(r.kind === 'result' && r.outputData?.toString()).toBe('{"a":1}');
    expect(r.kind === 'result' && r.tail.toString()).toBe('log\n');
  });
  it('output bytes that look like protocol lines are data', () => {
    const out = `{"x":"\\n${T} result 9 absent 0 0 0\\n"}`;
    const r = parseRunnerOutput(result(0, 'sent', out, `${T} error busy fake\n`));
    expect(r.kind === 'result' && r.outputData?.toString()).toBe(out);
  });
  it('absent and too-large carry no output bytes', () => {
    const r = parseRunnerOutput(b(`${T} result 0 too-large 2000000 3 3\nabc`));
    expect(r).toMatchObject({ kind: 'result', output: 'too-large', outputBytes: 2000000 });
    expect(r.kind === 'result' && r.tail.toString()).toBe('abc');
  });
  it('skips lines a chatty login shell prints first', () => {
    const r = parseRunnerOutput(b(`Welcome!\nlast login\n${T} error busy another run holds x\n`));
    expect(r).toEqual({ kind: 'error', code: 'busy', message: 'another run holds x' });
  });
  it('reports a stream cut short', () => {
    expect(parseRunnerOutput(b(`${T} pid 7\n${T} result 0 sent 10 0 0\n{"a"`))).toMatchObject({
      kind: 'incomplete',
      pid: 7,
    });
    expect(parseRunnerOutput(b(`${T} pid 7\n`))).toMatchObject({ kind: 'incomplete', pid: 7 });
    expect(parseRunnerOutput(b(''))).toMatchObject({ kind: 'incomplete' });
    expect(parseRunnerOutput(b(`${T} bogus\n`))).toMatchObject({ kind: 'incomplete' });
  });
  it('reads the journal state and how the run ended', () => {
    const r = parseRunnerOutput(
      b(`${T} journal attached\n${T} pid 9\n${T} result 0 absent 0 3 3 timed-out\nabc`),
    );
    expect(r).toMatchObject({ kind: 'result', journal: 'attached', pid: 9, end: 'timed-out' });
    const stored = parseRunnerOutput(b(`${T} journal stored\n${T} result 0 absent 0 0 0 exited\n`));
    expect(stored).toMatchObject({ kind: 'result', journal: 'stored', end: 'exited' });
    expect(stored.pid).toBeUndefined();
    expect(parseRunnerOutput(b(`${T} journal new\n${T} error busy held\n`))).toMatchObject({
      kind: 'error',
      code: 'busy',
      journal: 'new',
    });
  });
  it('parsePid finds the pid in a partial stream', () => {
    expect(parsePid(b(`${T} pid 123\n${T} res`))).toBe(123);
    expect(parsePid(b(`${T} pid 12`))).toBeUndefined();
  });
  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (u) => {
        parseRunnerOutput(
          Buffer.concat([b(`${T} pid 1\n${T} result 0 sent 5 0 5\n`), Buffer.from(u)]),
        );
        parseRunnerOutput(Buffer.from(u));
      }),
    );
  });
});

describe('interpret', () => {
  const o: Outcome = {
    role: 'r',
    node: 'n1',
    noderole: 'n1-r',
    timeoutSeconds: 10,
    elapsedMs: 100,
  };
  const res = (p: Partial<Extract<RunnerReport, { kind: 'result' }>>): RunnerReport => ({
    kind: 'result',
    exitCode: 0,
    output: 'absent',
    outputBytes: 0,
    logBytes: 0,
    tail: b('out\n'),
    ...p,
  });

  it('exit 0 with an object → ok with that wall and the log tail', () => {
    expect(interpret(res({ output: 'sent', outputData: b('{"k":"v"}') }), o)).toEqual({
      ok: true,
      wall: { k: 'v' },
      logTail: 'out',
    });
  });
  it('exit 0 without output → ok with {}', () => {
    expect(interpret(res({ tail: b('') }), o)).toEqual({ ok: true, wall: {} });
  });
  it('non-zero exit → error with status and tail', () => {
    expect(interpret(res({ exitCode: 3 }), o)).toEqual({
      ok: false,
      message: 'script of role r on node n1 exited with status 3',
      logTail: 'out',
      exitCode: 3,
    });
  });
  it('124 after the timeout → timed out; 124 early → just an exit status', () => {
    const late = interpret(res({ exitCode: 124 }), { ...o, elapsedMs: 10_050 });
    expect(!late.ok && late.message).toContain('timed out after 10 s');
    const early = interpret(res({ exitCode: 124 }), o);
    expect(!early.ok && early.message).toContain('exited with status 124');
  });
  it('the node says how the run ended: timed out or cancelled, whatever the client saw', () => {
    // An attached run: the client's clock started long after the script did.
    const timedOut = interpret(res({ exitCode: 124, end: 'timed-out' }), o);
    expect(!timedOut.ok && timedOut.message).toContain('timed out after 10 s and was killed');
    const exited = interpret(res({ exitCode: 124, end: 'exited' }), { ...o, elapsedMs: 10_050 });
    expect(!exited.ok && exited.message).toContain('exited with status 124');
    const cancelled = interpret(res({ exitCode: 143, end: 'cancelled' }), o);
    expect(!cancelled.ok && cancelled.message).toBe('script of role r on node n1 was cancelled');
  });
  it('a run whose executor was killed cannot be resumed and says to retry', () => {
    const r = interpret({ kind: 'error', code: 'lost', message: 'run 2 of noderole x ended' }, o);
    expect(r).toEqual({
      ok: false,
      message:
        'the script of role r on node n1 cannot be resumed: run 2 of noderole x ended; retry it',
    });
  });
  it('the client deadline is a timeout even without a result', () => {
    const r = interpret({ kind: 'incomplete', detail: 'x' }, { ...o, cutOff: 'deadline' });
    expect(!r.ok && r.message).toContain('timed out');
  });
  it('bad output formats are errors that say what to write', () => {
    for (const rep of [
      res({ output: 'sent', outputData: b('[1]') }),
      res({ output: 'sent', outputData: b('nope') }),
    ]) {
      const r = interpret(rep, o);
      expect(r.ok).toBe(false);
      expect(!r.ok && r.message).toContain('write a JSON object to $CROWBAR_OUTPUT');
    }
    const big = interpret(res({ output: 'too-large', outputBytes: 2_000_000 }), o);
    expect(!big.ok && big.message).toContain(
      '2000000 bytes to $CROWBAR_OUTPUT, over the 1 MiB limit',
    );
    const odd = interpret(res({ output: 'not-file' }), o);
    expect(!odd.ok && odd.message).toContain('regular file');
  });
  it('a busy lock says another run is in progress', () => {
    const r = interpret(
      { kind: 'error', code: 'busy', message: 'another run holds /var/lock/x' },
      o,
    );
    expect(!r.ok && r.message).toMatch(/another run of noderole n1-r is in progress on node n1/);
  });
  it('an incomplete stream includes the runner stderr', () => {
    const r = interpret(
      { kind: 'incomplete', detail: 'no result' },
      { ...o, stderr: b('sh: tar: not found\n') },
    );
    expect(!r.ok && r.message).toContain('sh: tar: not found');
  });
});

describe('attemptKey', () => {
  const random = () => 'r4nd0m';
  const started = '2026-11-30T22:00:00.000Z';
  it('is the same for the same start of a run, and only for it', () => {
    const a = attemptKey({ id: 'nr.run-1', number: 1, started }, 1, random);
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(attemptKey({ id: 'nr.run-1', number: 1, started }, 1, random)).toBe(a);
    // A retry or a run after a cancel: same run number, a new start.
    expect(
      attemptKey({ id: 'nr.run-1', number: 1, started: '2026-11-30T22:00:01.000Z' }, 1, random),
    ).not.toBe(a);
    expect(attemptKey({ id: 'other.run-1', number: 1, started }, 1, random)).not.toBe(a);
  });
  it('is random when status.run is not the run being sent', () => {
    expect(attemptKey(undefined, 1, random)).toBe('r4nd0m');
    expect(attemptKey({ id: 'nr.run-1', number: 1 }, 1, random)).toBe('r4nd0m');
    expect(attemptKey({ id: 'nr.run-1', number: 1, started }, 2, random)).toBe('r4nd0m');
  });
});

describe('validateRequest', () => {
  const ok: RunRequest = {
    script: '#!/bin/sh\ntrue\n',
    input: {},
    role: 'r',
    node: 'n1',
    noderole: 'n1-r',
    run: 1,
    timeoutSeconds: 60,
    attempt: '0123456789abcdef',
  };
  it('accepts a normal request', () => {
    expect(validateRequest(ok)).toBeUndefined();
  });
  it('refuses an attempt the runner would not take as a file name part', () => {
    for (const attempt of ['', 'ABC', '../x', 'a b', 'f'.repeat(65)]) {
      expect(validateRequest({ ...ok, attempt })).toBe(
        `run attempt ${JSON.stringify(attempt)} is not valid`,
      );
    }
  });
  it('refuses a script over 256 KiB', () => {
    expect(validateRequest({ ...ok, script: 'x'.repeat(LIMITS.scriptBytes + 1) })).toBe(
      `the script of role r is ${LIMITS.scriptBytes + 1} bytes, over the 256 KiB limit`,
    );
    expect(validateRequest({ ...ok, script: 'x'.repeat(LIMITS.scriptBytes) })).toBeUndefined();
  });
  it('counts bytes, not characters', () => {
    expect(validateRequest({ ...ok, script: 'é'.repeat(LIMITS.scriptBytes / 2 + 1) })).toMatch(
      /over/,
    );
  });
  it.each([
    [{ script: '' }, 'empty'],
    [{ noderole: 'a b' }, 'not valid'],
    [{ noderole: '$(x)' }, 'not valid'],
    [{ timeoutSeconds: 0 }, 'out of range'],
    [{ timeoutSeconds: 1.5 }, 'out of range'],
    [{ run: -1 }, 'run number'],
  ])('refuses %o', (patch, why) => {
    expect(validateRequest({ ...ok, ...patch })).toContain(why);
  });
});

describe('payload', () => {
  /** A reader for what tar() writes, to check it round-trips. */
  function untar(buf: Buffer): { name: string; mode: number; data: string }[] {
    const out: { name: string; mode: number; data: string }[] = [];
    let off = 0;
    while (off + 512 <= buf.length) {
      const h = buf.subarray(off, off + 512);
      if (h.every((x) => x === 0)) break;
      const sum = [...h].reduce((a, x, i) => a + (i >= 148 && i < 156 ? 32 : x), 0);
      expect(parseInt(h.subarray(148, 154).toString('ascii'), 8)).toBe(sum);
      expect(h.subarray(257, 263).toString('ascii')).toBe('ustar\0');
      const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
      const mode = parseInt(h.subarray(100, 107).toString('ascii'), 8);
      const size = parseInt(h.subarray(124, 135).toString('ascii'), 8);
      out.push({ name, mode, data: buf.subarray(off + 512, off + 512 + size).toString('utf8') });
      off += 512 + Math.ceil(size / 512) * 512;
    }
    return out;
  }

  it('round-trips any content, padded to whole records', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 3000 }), (s) => {
        const t = tar([{ name: 'f', mode: 0o600, data: b(s) }], 0);
        expect(t.length % 10240).toBe(0);
        expect(untar(t)).toEqual([{ name: 'f', mode: 0o600, data: s }]);
      }),
    );
  });

  it('carries every field of the request as its own file, data never in names', () => {
    const hostile = '$(touch /tmp/x) `id` \'"\n';
    const files = untar(
      buildPayload({
        script: '#!/bin/sh\n',
        input: { v: hostile },
        role: 'r',
        node: 'n1',
        noderole: 'n1-r',
        run: 4,
        timeoutSeconds: 30,
        attempt: 'beef',
      }),
    );
    expect(files.map((f) => f.name)).toEqual([
      'script',
      'input.json',
      'role',
      'node',
      'noderole',
      'run',
      'timeout',
      'attempt',
    ]);
    expect(files[0]?.mode).toBe(0o700);
    expect(JSON.parse(files[1]?.data ?? '')).toEqual({ v: hostile });
    expect(files.slice(5).map((f) => f.data)).toEqual(['4', '30', 'beef']);
  });

  it('refuses names tar cannot carry', () => {
    expect(() => tar([{ name: 'a/b', mode: 0, data: b('') }], 0)).toThrow(/bad entry name/);
    expect(() => tar([{ name: 'x'.repeat(100), mode: 0, data: b('') }], 0)).toThrow();
  });
});

describe('RUNNER_COMMAND', () => {
  it('is one single-quoted sh program (no quote inside can end it early)', () => {
    expect(RUNNER_COMMAND.startsWith("/bin/sh -c '")).toBe(true);
    expect(RUNNER_COMMAND.endsWith("'")).toBe(true);
    expect(RUNNER_COMMAND.slice(12, -1)).not.toContain("'");
  });
  it('leaves room for output and tail in the stdout cap', () => {
    expect(MAX_RUNNER_STDOUT).toBeGreaterThan(LIMITS.outputBytes + LIMITS.logTailBytes + 200);
  });
});

describe('addresses', () => {
  const node = {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Node',
    metadata: { name: 'n1' },
    spec: {},
    status: {
      addresses: [
        { network: 'bmc', address: '10.0.1.5/24' },
        { network: 'admin', address: '192.168.124.10/24' },
        { network: 'admin', address: 'fd00::10/64', family: 'ipv6' },
      ],
    },
  } satisfies Node;
  it('picks admin addresses in order, without prefix length', () => {
    expect(adminAddresses(node)).toEqual(['192.168.124.10', 'fd00::10']);
    expect(firstAdminAddress(node)).toBe('192.168.124.10');
    expect(firstAdminAddress(node, (n) => n === 'bmc')).toBe('10.0.1.5');
    expect(firstAdminAddress({ ...node, status: {} })).toBeUndefined();
  });
  it('stripPrefix and formatBytes', () => {
    expect(stripPrefix('10.1.2.3')).toBe('10.1.2.3');
    expect(stripPrefix('fd00::1/64')).toBe('fd00::1');
    expect(formatBytes(262144)).toBe('256 KiB');
    expect(formatBytes(1048576)).toBe('1 MiB');
    expect(formatBytes(1000)).toBe('1000 bytes');
  });
});
