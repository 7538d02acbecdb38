/**
 * `make lab` keeps working: the lab comes up whole (the admission webhook included), converges by
 * itself on its own examples, answers as a cluster would, verifies itself and tears down.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { ROOT } from '../harness/operator.ts';

it('brings the lab up, converges fully with the webhook in the path, then stops it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crowbar-lab-'));
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(ROOT, 'lab', 'main.ts'), '--check'],
      {
        // Its own directory and namespaces: a lab a person has up on this machine is left alone.
        env: {
          ...process.env,
          CROWBAR_LAB_DIR: dir,
          CROWBAR_LAB_PREFIX: `cbl-${randomBytes(2).toString('hex')}`,
          CROWBAR_LAB_DNS_PORT: '5353',
        },
        timeout: 170_000,
      },
    );
    expect(stdout).toMatch(/control plane ready/);
    expect(stdout).toMatch(/admission webhook ready at https:\/\/127\.0\.0\.1:\d+\/validate/);
    expect(stdout).toMatch(/operator ready/);
    // Everything the examples bind is active: 3 machines x (crowbar-access, dns-client,
    // ntp-client, crowbar-managed-node, network-lab-fleet, lab-facts, lab-report) and the two
    // bootstrap servers on the admin node; both deployments and all four Nodes active.
    const converged = stdout.split('\n').filter((l) => l.startsWith('lab: converged in'));
    expect(converged).toHaveLength(1);
    expect(converged[0]).toMatch(
      /^lab: converged in \d+\.\d s: 2 deployments active, 4 nodes active, 23 noderoles active$/,
    );
    // The webhook is in the API server's path, as the chart puts it.
    expect(stdout).toMatch(/webhook refused a require that closes a cycle/);
    expect(stdout).toMatch(/webhook refused deleting dns-server\.admin\.lab\.crowbar\.dev/);
    expect(stdout).toMatch(
      /status policy refused a status write by an account that is not the operator/,
    );
    expect(stdout).toMatch(/DNS sidecar ready at /);
    expect(stdout).toMatch(/DNS answers node1\.lab\.crowbar\.dev A \d+\.\d+\.\d+\.\d+/);
    expect(stdout).toMatch(/check passed: 4 nodes/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 180_000);
