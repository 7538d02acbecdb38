/**
 * `make lab` keeps working: the lab comes up whole (the admission webhook included), converges by
 * itself on its own examples, answers as a cluster would, verifies itself and tears down.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { checkGraphPng } from '../harness/graph-png.ts';
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
          // Port 53 on this lab's own host address (its /24 is unique on the machine), so the lab
          // machines' resolv.conf can name the sidecar.
          CROWBAR_LAB_DNS_PORT: '53',
        },
        timeout: 170_000,
      },
    );
    expect(stdout).toMatch(/control plane ready/);
    expect(stdout).toMatch(/admission webhook ready at https:\/\/127\.0\.0\.1:\d+\/validate/);
    expect(stdout).toMatch(/operator ready/);
    // Everything the examples bind is active: 3 machines x (crowbar-access, dns-client,
    // ntp-client, crowbar-managed-node, network-admin, lab-facts, lab-report) and the two
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
    // The machines booted by DHCP from the sidecar on the lab bridge: each got its Node's admin
    // allocation and the network's options (the lab compares them with the API's allocations).
    expect(stdout).toMatch(/DHCP sidecar ready at 10\.251\.\d+\.2 on the lab bridge/);
    for (const n of [1, 2, 3]) {
      expect(stdout).toMatch(
        new RegExp(
          `DHCP gave node${String(n)}\\.lab\\.crowbar\\.dev (10\\.251\\.\\d+)\\.\\d+/24 \\(its admin allocation\\), router \\1\\.1, dns \\1\\.1, hostname node${String(n)}, domain lab\\.crowbar\\.dev, from \\1\\.2`,
        ),
      );
    }
    expect(stdout).toMatch(
      /lab machine \S+-m1 resolves node1 to \d+\.\d+\.\d+\.\d+ through its own resolver/,
    );
    expect(stdout).toMatch(/check passed: 4 nodes/);
    // `kubectl crowbar graph` on the converged lab: SVG and PNG with every noderole and edge.
    expect(stdout).toMatch(/lab: the noderole graph \(kubectl crowbar graph\): .*graph\.png/);
    const dot = readFileSync(join(dir, 'graph.dot'), 'utf8');
    const edges = dot.split('\n').filter((l) => / -> /.test(l)).length;
    // At least each machine's DNS and NTP clients under the admin node's servers.
    expect(edges).toBeGreaterThanOrEqual(6);
    const svg = readFileSync(join(dir, 'graph.svg'), 'utf8');
    expect(svg.match(/<g id="node\d+" class="node">/g)).toHaveLength(23);
    expect(svg.match(/<g id="edge\d+" class="edge">/g)).toHaveLength(edges);
    const png = readFileSync(join(dir, 'graph.png'));
    expect(png.length).toBeGreaterThan(20_000);
    const seen = checkGraphPng(png, dot);
    expect(seen).toMatchObject({ nodes: 23, edges, missing: [] });
    expect(seen.width).toBeGreaterThan(400);
    expect(seen.height).toBeGreaterThan(200);
    if (process.env['CROWBAR_KEEP_LAB_GRAPH'])
      copyFileSync(join(dir, 'graph.png'), process.env['CROWBAR_KEEP_LAB_GRAPH']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 180_000);
