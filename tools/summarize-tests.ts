/**
 * Prints vitest's JSON results as plain closing lines: one per failed test (file, name, the first
 * line of its error), then "tests: N passed, N failed[, N skipped]". CI shows only the tail of a
 * run's output, so what failed must be said last.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface Assertion {
  fullName: string;
  status: string;
  failureMessages?: string[];
}
interface Results {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults?: {
    name: string;
    status: string;
    message?: string;
    assertionResults?: Assertion[];
  }[];
}
// Colour codes would make the lines unreadable in plain logs.
// eslint-disable-next-line no-control-regex
const plain = (s: string): string => s.replace(/\x1b\[[0-9;]*m/g, '');
const firstLine = (s: string): string => plain(s).split('\n')[0]?.slice(0, 400) ?? '';

const file = process.argv[2] ?? '.vitest-results.json';
const r = JSON.parse(readFileSync(file, 'utf8')) as Results;
for (const f of r.testResults ?? []) {
  const where = relative(process.cwd(), f.name);
  const failed = (f.assertionResults ?? []).filter((a) => a.status === 'failed');
  for (const a of failed)
    console.log(`FAILED ${where} > ${a.fullName}: ${firstLine(a.failureMessages?.[0] ?? '')}`);
  if (f.status === 'failed' && failed.length === 0)
    console.log(`FAILED ${where}: ${firstLine(f.message ?? 'the file failed to run')}`);
}
const skipped = r.numPendingTests + r.numTodoTests;
console.log(
  `tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}`,
);
