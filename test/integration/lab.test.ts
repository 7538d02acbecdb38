/** `make lab` keeps working: the lab comes up whole, verifies itself and tears down. */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { ROOT } from '../harness/operator.ts';

it('brings the lab up with the operator ready and the examples applied, then stops it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crowbar-lab-'));
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(ROOT, 'lab', 'main.ts'), '--check'],
      {
        env: { ...process.env, CROWBAR_LAB_DIR: dir },
        timeout: 120_000,
      },
    );
    expect(stdout).toMatch(/control plane ready/);
    expect(stdout).toMatch(/operator ready/);
    expect(stdout).toMatch(/check passed: 4 nodes/);
    // The script roles ran on the fleet's sshd machines and converged.
    expect(stdout).toMatch(/6 script noderoles active on the fleet/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
