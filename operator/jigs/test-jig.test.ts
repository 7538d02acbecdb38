import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeRole } from '../../generated/crowbar.ts';
import { makeTestJig, readTestJournal } from './test-jig.ts';
import type { JigRun } from './types.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function run(started: string, number = 1): JigRun {
  const noderole: NodeRole = {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'NodeRole',
    metadata: { name: 'r.n1' },
    spec: { role: 'r', node: 'n1', deployment: 'd' },
    status: { run: { id: `r.n1.run-${String(number)}`, number, started } },
  };
  return {
    noderole,
    role: {
      apiVersion: 'crowbar.dev/v1alpha1',
      kind: 'Role',
      metadata: { name: 'r' },
      spec: { jig: 'test', test: { wall: { k: 1 } } },
    },
    node: { apiVersion: 'crowbar.dev/v1alpha1', kind: 'Node', metadata: { name: 'n1' }, spec: {} },
    number,
    input: {},
    signal: new AbortController().signal,
  };
}

describe('test jig journal', () => {
  it('journals start and end, and returns the stored result for the same attempt', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbt-testjig-'));
    dirs.push(dir);
    const path = join(dir, 'journal');
    const jig = makeTestJig(path);
    const first = await jig.run(run('2026-12-01T00:00:00Z'));
    expect(first).toEqual({ ok: true, wall: { k: 1, test: { run: 1 } }, logTail: 'ran r.n1' });
    // The same attempt sent again (a re-adopted run): the stored result, no second execution.
    expect(await jig.run(run('2026-12-01T00:00:00Z'))).toEqual(first);
    // Another start of run 1 (a new attempt) executes.
    await jig.run(run('2026-12-01T00:00:05Z'));
    expect(readTestJournal(path).map((e) => e.ev)).toEqual([
      'start',
      'end',
      'stored',
      'start',
      'end',
    ]);
  });

  it('skips a torn last line and reads a missing journal as empty', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbt-testjig-'));
    dirs.push(dir);
    expect(readTestJournal(join(dir, 'none'))).toEqual([]);
    const path = join(dir, 'journal');
    writeFileSync(
      path,
      '{"ev":"start","noderole":"a","run":1,"attempt":"x","pid":1,"t":1}\n{"ev":"en',
    );
    expect(readTestJournal(path).map((e) => e.noderole)).toEqual(['a']);
  });
});
