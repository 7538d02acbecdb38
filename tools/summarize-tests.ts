/** Prints vitest's JSON results as one plain closing line: "N passed, N failed[, N skipped]". */
import { readFileSync } from 'node:fs';

interface Results {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
}
const file = process.argv[2] ?? '.vitest-results.json';
const r = JSON.parse(readFileSync(file, 'utf8')) as Results;
const skipped = r.numPendingTests + r.numTodoTests;
console.log(
  `tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}`,
);
