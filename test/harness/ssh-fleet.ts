/**
 * A fleet of SSH machines for script-jig tests and benches: one lab network (netns.ts) and, per
 * machine, a node namespace running a real OpenSSH sshd (sshd.ts) that lets root in with the keys
 * the caller names. Traffic stays on the lab's own 10.251.S.0/24.
 *
 * The fleet is made in two steps so that teardown never depends on set-up having finished: the
 * scratch directory exists from construction, `start()` records each namespace and sshd as soon
 * as it exists, and `destroy()` removes whatever is there, whether `start()` completed or threw.
 * When a timed-out hook leaves `start()` running, it makes no further machine after `destroy()`.
 *
 * ```ts
 * const machines = new SshFleet({ prefix: `cbt-jig-${id}`, noderoleTag: id });
 * beforeAll(async () => {
 *   key = await machines.generateKey('root');
 *   await machines.start(['n1', 'n2'], { authorizedKeys: () => [key.publicKey] });
 * });
 * afterAll(() => machines.destroy());
 * ```
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node, NodeStatus } from '../../generated/crowbar.ts';
import { JOURNAL_DIRS } from '../../operator/jigs/script/protocol.ts';
import type { HostileMode, HostileOptions } from './hostile-ssh.ts';
import { createLabNetwork, type LabNetwork, type LabNode } from './netns.ts';
import { startProcess, waitFor, type Started } from './process.ts';
import { generateKeyPair, startSshd, type KeyPair, type Sshd } from './sshd.ts';

export interface SshFleetOptions {
  /** Start of the scratch directory's name in the temp dir, e.g. `cbt-jig-<id>`. */
  prefix: string;
  /**
   * A string in the name of every noderole run on the fleet. The runner's journal directories
   * (`/var/lib/crowbar-jig/<noderole>`) are on this host, shared by every machine (they share its
   * filesystem), and outlive the run by design; `destroy()` removes those that contain it.
   */
  noderoleTag?: string;
}

export interface SshMachinesOptions {
  /** Public key lines that may log in as root on `machine`. */
  authorizedKeys: (machine: string) => readonly string[];
  /** See `SshdOptions.quietRootShell`: for runs whose timing matters. */
  quietRootShell?: boolean;
}

export class SshFleet {
  /** Scratch directory: keys, each sshd's files, and the test's own files; removed by destroy(). */
  readonly dir: string;
  private readonly noderoleTag: string | undefined;
  private network: LabNetwork | undefined;
  private readonly sshds = new Map<string, Sshd>();
  private readonly hostiles = new Map<string, Started>();
  private destroyed = false;

  constructor(o: SshFleetOptions) {
    this.dir = mkdtempSync(join(tmpdir(), `${o.prefix}-`));
    this.noderoleTag = o.noderoleTag;
  }

  /** An unencrypted ed25519 key pair in the scratch directory. */
  generateKey(name: string): Promise<KeyPair> {
    return generateKeyPair(this.dir, name);
  }

  /** Creates the lab network and one machine per name, each with a running sshd on port 22. */
  async start(machines: readonly string[], o: SshMachinesOptions): Promise<void> {
    if (this.network) throw new Error('the SSH fleet is already started');
    this.network = await createLabNetwork();
    for (const name of machines) {
      // A hook that timed out may have destroyed the fleet already: make nothing it would miss.
      if (this.destroyed) throw new Error('the SSH fleet was destroyed while starting');
      const ln = await this.network.addNode(name);
      this.sshds.set(
        name,
        await startSshd({
          ns: ln.ns,
          address: ln.address,
          authorizedKeys: o.authorizedKeys(name),
          dir: mkdtempSync(join(this.dir, `sshd-${name}-`)),
          ...(o.quietRootShell === undefined ? {} : { quietRootShell: o.quietRootShell }),
        }),
      );
    }
  }

  /**
   * Adds a hostile machine (hostile-ssh.ts): its own namespace on the lab, where an ssh2 server
   * in a child process listens on port 22 of the machine's address and misbehaves as `mode` says.
   * Its events go to `<dir>/hostile-<name>.log`. Call after `start()`.
   */
  async startHostile(
    name: string,
    mode: HostileMode,
    hostKeys: readonly KeyPair[],
    o: { swapAfter?: number } = {},
  ): Promise<LabNode> {
    if (this.destroyed) throw new Error('the SSH fleet was destroyed');
    const [first, ...more] = hostKeys;
    if (!first) throw new Error('a hostile machine needs a host key');
    const ln = await this.lab.addNode(name);
    const opts: HostileOptions = {
      mode,
      host: ln.address,
      port: 22,
      hostKeyFiles: [first.path, ...more.map((k) => k.path)],
      ...(o.swapAfter === undefined ? {} : { swapAfter: o.swapAfter }),
    };
    const log = join(this.dir, `hostile-${name}.log`);
    const p = startProcess(
      'ip',
      [
        'netns',
        'exec',
        ln.ns,
        process.execPath,
        join(import.meta.dirname, 'hostile-ssh.ts'),
        JSON.stringify(opts),
      ],
      log,
    );
    this.hostiles.set(name, p);
    await waitFor(
      `hostile machine ${name} listening`,
      () => {
        const text = readFileSync(log, 'utf8');
        if (text.includes('"event":"error"') || p.proc.exitCode !== null)
          throw new Error(`hostile machine ${name} did not start: ${text.slice(-2000)}`);
        return Promise.resolve(text.includes('"event":"listening"'));
      },
      20_000,
    );
    return ln;
  }

  /** What hostile machine `name` reported so far (its JSON event lines). */
  hostileEvents(name: string): Record<string, unknown>[] {
    return readFileSync(join(this.dir, `hostile-${name}.log`), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** The lab network: its subnet, host-side address and an address no machine has. */
  get lab(): LabNetwork {
    if (!this.network) throw new Error('the SSH fleet is not started');
    return this.network;
  }

  /** Machine `name`'s namespace and address. */
  node(name: string): LabNode {
    const n = this.network?.nodes.get(name);
    if (!n) throw new Error(`the SSH fleet has no machine ${name}`);
    return n;
  }

  /** Machine `name`'s sshd: stop, start and rotate its host key to play a dead or new node. */
  sshd(name: string): Sshd {
    const s = this.sshds.get(name);
    if (!s) throw new Error(`the SSH fleet has no machine ${name}`);
    return s;
  }

  /**
   * Stops every sshd and removes the namespaces (and the processes in them, such as runs still
   * executing), the scratch directory and the runner's journal directories. Safe after a failed or unfinished `start()` and when called twice; throws only when a
   * namespace could not be removed, after removing everything else.
   */
  async destroy(): Promise<void> {
    this.destroyed = true;
    try {
      for (const s of this.sshds.values()) await s.cleanup().catch(() => undefined);
      for (const h of this.hostiles.values()) await h.stop(5000).catch(() => undefined);
    } finally {
      try {
        await this.network?.destroy();
      } finally {
        rmSync(this.dir, { recursive: true, force: true });
        if (this.noderoleTag !== undefined) removeJournals(this.noderoleTag);
      }
    }
  }
}

/**
 * Removes the runner's journal directories (`<journal>/<noderole>`, see JOURNAL_DIRS) whose
 * noderole names contain `tag`: they outlive runs by design, so tests that run jigs remove theirs.
 */
export function removeJournals(tag: string): void {
  for (const d of JOURNAL_DIRS) {
    let names: string[] = [];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const f of names) {
      if (!f.includes(tag)) continue;
      // A run whose executor was killed leaves its directory under /tmp: the entry names it.
      let entries: string[] = [];
      try {
        entries = readdirSync(join(d, f));
      } catch {
        // not a directory
      }
      for (const e of entries) {
        try {
          const dir = readFileSync(join(d, f, e, 'dir'), 'utf8').trim();
          if (dir.startsWith('/tmp/crowbar-jig.')) rmSync(dir, { recursive: true, force: true });
        } catch {
          // no run directory recorded
        }
      }
      rmSync(join(d, f), { recursive: true, force: true });
    }
  }
}

/**
 * A Node as the script jig sees it, with `cidr` (address/prefix) as its admin address in
 * status.addresses; for jig runs without an API server.
 */
export function adminNode(
  name: string,
  cidr: string,
  status: Omit<NodeStatus, 'addresses'> = {},
): Node {
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Node',
    metadata: { name },
    spec: {},
    status: { addresses: [{ network: 'admin', address: cidr, family: 'ipv4' }], ...status },
  };
}
