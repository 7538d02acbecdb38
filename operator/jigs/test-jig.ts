/**
 * The test jig: simulated work for tests, benchmarks and the lab. Role `spec.test` sets a delay,
 * failure and the wall it returns; a noderole's committed data may override them under
 * `test` (e.g. {"test": {"fail": true}}) so one binding can fail while its peers succeed.
 *
 * With a journal (`--test-jig-journal=<file>`, for the chaos suite) it plays a node that remembers
 * its executions, as the script jig's node-side runner does: every execution appends a `start` and,
 * when it completes, an `end` line (JSON, with the noderole, run number, attempt, pid and time) to
 * the file, which outlives the operator; a run sent again for an attempt that already completed
 * (a re-adopted run whose result was never recorded) returns the stored result and appends
 * `stored` instead of executing again. An execution dies with its operator (it runs in-process), so
 * an attempt that started and never ended executes again.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { attemptKey } from './script/protocol.ts';
import { sleep, type Jig, type JigResult, type JigRun } from './types.ts';

interface TestSettings {
  delayMs?: number;
  fail?: boolean;
  failMessage?: string;
  wall?: Record<string, unknown>;
}

/** One line of the test jig's journal. */
export interface TestJournalEntry {
  ev: 'start' | 'end' | 'stored';
  noderole: string;
  run: number;
  attempt: string;
  pid: number;
  /** Date.now() when written. */
  t: number;
  /** On `end`: the result. */
  result?: JigResult;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function settings(run: JigRun): TestSettings {
  const fromRole: TestSettings = run.role.spec.test ?? {};
  const override = run.noderole.status?.committedData?.['test'];
  return isRecord(override) ? { ...fromRole, ...(override as TestSettings) } : fromRole;
}

/** Every entry of a test jig journal; lines that do not parse (a torn last line) are skipped. */
export function readTestJournal(path: string): TestJournalEntry[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: TestJournalEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      out.push(JSON.parse(line) as TestJournalEntry);
    } catch {
      // A line cut short by a kill mid-write: not an entry.
    }
  }
  return out;
}

/** The test jig; with `journal`, executions are journaled in that file (see above). */
export function makeTestJig(journal?: string): Jig {
  const note = (e: Omit<TestJournalEntry, 'pid' | 't'>): void => {
    if (journal === undefined) return;
    // One write(2) with O_APPEND per line: lines of concurrent writers never interleave.
    appendFileSync(journal, `${JSON.stringify({ ...e, pid: process.pid, t: Date.now() })}\n`);
  };
  return {
    name: 'test',
    async run(run) {
      const s = settings(run);
      const noderole = run.noderole.metadata.name ?? '';
      const attempt = attemptKey(run.noderole.status?.run, run.number, () =>
        randomBytes(8).toString('hex'),
      );
      if (journal !== undefined) {
        const done = readTestJournal(journal).find(
          (e) => e.ev === 'end' && e.noderole === noderole && e.attempt === attempt,
        );
        if (done?.result) {
          note({ ev: 'stored', noderole, run: run.number, attempt });
          return done.result;
        }
      }
      note({ ev: 'start', noderole, run: run.number, attempt });
      await sleep(Math.max(0, s.delayMs ?? 0), run.signal);
      let result: JigResult;
      if (s.fail) {
        const message = s.failMessage ?? `test jig failed as configured (run ${run.number})`;
        result = { ok: false, message, logTail: message, exitCode: 1 };
      } else {
        result = {
          ok: true,
          wall: { ...(s.wall ?? {}), test: { run: run.number } },
          logTail: `ran ${noderole}`,
        };
      }
      note({ ev: 'end', noderole, run: run.number, attempt, result });
      return result;
    },
  };
}

/** The test jig without a journal. */
export const testJig: Jig = makeTestJig();
