/**
 * The DHCP/TFTP/HTTP boot sidecar (dhcp-sidecar/main.ts) as the labs of the tests start it
 * (dhcp-lab.ts, prov-lab.ts): inside the namespace that holds the provisioning bridge, at
 * `serverIp`, reaching the test API server through the Unix-socket relay (dhcp-sidecar/relay.ts,
 * made once per lab and kept across restarts), debug logs in `dir`/sidecar.log; ready when its
 * /readyz answers from inside the namespace.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { unixToTcp } from '../../dhcp-sidecar/relay.ts';
import { nsExec } from './netns.ts';
import { startProcess, waitFor, type Started } from './process.ts';

const ROOT = join(import.meta.dirname, '..', '..');

export interface SidecarPlace {
  /** The namespace holding the bridge. */
  ns: string;
  serverIp: string;
  /** api.sock, state/ and sidecar.log go here. */
  dir: string;
  fileRoot: string;
  /** The sidecar's --id (its name on the Nodes' acknowledgements). */
  id: string;
}

export interface SidecarRun {
  kubeconfig: string;
  apiServer: string;
  network: string;
  args?: readonly string[];
}

/** A Network of category admin on `net`.0/24 with the given ranges (last octets). */
export function adminNetwork(
  name: string,
  net: string,
  ranges: Record<string, [number, number]>,
  extra: Record<string, unknown> = {},
): never {
  return {
    metadata: { name },
    spec: {
      category: 'admin',
      subnet: `${net}.0/24`,
      ranges: Object.entries(ranges).map(([r, [first, last]]) => ({
        name: r,
        first: `${net}.${first}`,
        last: `${net}.${last}`,
      })),
      ...extra,
    },
  } as never;
}

export class DhcpSidecar {
  private relay: Server | undefined;
  private readonly at: SidecarPlace;
  constructor(at: SidecarPlace) {
    this.at = at;
  }

  get logFile(): string {
    return join(this.at.dir, 'sidecar.log');
  }

  /** The log so far (for failure messages). */
  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Starts the sidecar; resolves once it is ready, rejects with its log's tail if it exits. */
  async start(o: SidecarRun): Promise<Started> {
    const sock = join(this.at.dir, 'api.sock');
    if (!this.relay) {
      const u = new URL(o.apiServer);
      this.relay = await unixToTcp(sock, u.hostname, Number(u.port));
    }
    const s = startProcess(
      'ip',
      [
        'netns',
        'exec',
        this.at.ns,
        process.execPath,
        join(ROOT, 'dhcp-sidecar', 'main.ts'),
        '--kubeconfig',
        o.kubeconfig,
        '--api-via-unix',
        sock,
        '--server-ip',
        this.at.serverIp,
        '--network',
        o.network,
        '--state-dir',
        join(this.at.dir, 'state'),
        '--file-root',
        this.at.fileRoot,
        '--id',
        this.at.id,
        ...(o.args ?? []),
      ],
      this.logFile,
      { env: { ...process.env, LOG_LEVEL: 'debug' } },
    );
    await waitFor(
      'dhcp sidecar ready',
      async () => {
        if (s.proc.exitCode !== null) throw new Error(`sidecar exited: ${this.log().slice(-2000)}`);
        const r = await nsExec(this.at.ns, 'curl', [
          '-sf',
          '-m',
          '2',
          `http://${this.at.serverIp}:8080/readyz`,
        ]);
        return r.stdout.trim() === 'ok';
      },
      30_000,
      200,
    ).catch(async (e: unknown) => {
      await s.stop(5000);
      throw e;
    });
    return s;
  }

  /** Closes the relay (the caller stops the processes start() returned). */
  close(): void {
    this.relay?.close();
    this.relay = undefined;
  }
}
