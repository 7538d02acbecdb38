/**
 * A hostile SSH node for tests: an `ssh2` server the test controls, playing the machines that
 * break naive clients. It speaks real SSH (key exchange, host keys, public-key authentication,
 * channels, keepalive replies), so the operator's real client code talks to it; only what it does
 * on a channel is hostile. It runs in-process on loopback ({@link startHostileSsh}) or, as its own
 * process, inside a lab node's network namespace (`node hostile-ssh.ts <json options>`; see
 * ssh-fleet.ts `startHostile`), reporting what happens as JSON lines on stdout.
 *
 * Every mode answers `echo alive` like a healthy node (the aliveness check passes), except
 * `stall-open`, and is hostile to everything else (the script jig's runner):
 *
 * - `stall-open`:  never answers a session channel open (keepalives are still answered);
 * - `stall-close`: accepts the runner, swallows its payload, prints `journal new` and a `pid` line,
 *   then never exits and never closes the channel, not even when the client closes it, and never
 *   answers another channel open on that connection (the client's cancel);
 * - `flood`:       floods stdout and stderr without end (as fast as the window allows);
 * - `forge-deep`:  a forged `result` whose output is a JSON object nested 100,000 levels deep;
 * - `forge-line`:  a forged protocol line of 600 KiB and no result;
 * - `forge-tail`:  a forged `result` with a log tail of invalid UTF-8, control characters and
 *   lines that look like the protocol's, and a wall over what it said it would send;
 * - `swap-key`:    healthy (`echo alive`, and the runner gets a forged success), but each new
 *   connection after the first `swapAfter` presents the second host key.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import ssh2, { type Connection, type Server, type ServerChannel } from 'ssh2';

// ssh2 is CommonJS: Node's ESM loader sees `Client` as a named export but not `Server`.
const { Server: SshServer } = ssh2;

export type HostileMode =
  'stall-open' | 'stall-close' | 'flood' | 'forge-deep' | 'forge-line' | 'forge-tail' | 'swap-key';

export const HOSTILE_MODES: readonly HostileMode[] = [
  'stall-open',
  'stall-close',
  'flood',
  'forge-deep',
  'forge-line',
  'forge-tail',
  'swap-key',
];

export interface HostileOptions {
  mode: HostileMode;
  host: string;
  port: number;
  /** Private host key files (OpenSSH format): the first is used until a swap. */
  hostKeyFiles: [string, ...string[]];
  /** `swap-key`: connections after this many present the second key. Default 1. */
  swapAfter?: number;
}

/** What the server saw, for the test to assert on. */
export interface HostileStats {
  connections: number;
  /** Connections closed (by either side). */
  closed: number;
  channelOpens: number;
  execs: string[];
  keepalives: number;
}

export interface HostileSsh {
  port: number;
  stats: HostileStats;
  close(): Promise<void>;
}

const TAG = 'crowbar-jig/1';

/** Starts the hostile server; `onEvent` hears each thing it does (for the child process). */
export async function startHostileSsh(
  o: HostileOptions,
  onEvent: (e: Record<string, unknown>) => void = () => undefined,
): Promise<HostileSsh> {
  const keys = o.hostKeyFiles.map((f) => readFileSync(f));
  const stats: HostileStats = {
    connections: 0,
    closed: 0,
    channelOpens: 0,
    execs: [],
    keepalives: 0,
  };
  const conns = new Set<Connection>();
  const swapAfter = o.swapAfter ?? 1;
  const first = keys[0];
  if (!first) throw new Error('the hostile SSH server needs a host key');
  const second = keys[1] ?? first;

  const servers: Server[] = [];
  const serve = (key: Buffer): Server => {
    const server = new SshServer({ hostKeys: [key] }, (conn) => {
      stats.connections++;
      conns.add(conn);
      onEvent({ event: 'connection', n: stats.connections });
      handle(conn);
    });
    servers.push(server);
    return server;
  };

  const handle = (conn: Connection): void => {
    let channels = 0;
    conn.on('error', () => undefined);
    conn.on('close', () => {
      stats.closed++;
      conns.delete(conn);
      onEvent({ event: 'closed', n: stats.closed });
    });
    conn.on('authentication', (ctx) => {
      // Any public key: the hostile part comes later.
      if (ctx.method === 'publickey') ctx.accept();
      else ctx.reject(['publickey']);
    });
    conn.on('request', (accept, reject, name) => {
      // keepalive@openssh.com and the like: answered, so the connection looks alive forever.
      if (name.startsWith('keepalive')) stats.keepalives++;
      reject?.();
    });
    conn.on('ready', () => {
      conn.on('session', (accept) => {
        stats.channelOpens++;
        channels++;
        onEvent({ event: 'channel-open', n: stats.channelOpens });
        if (o.mode === 'stall-open') return; // never accepted, never refused
        if (o.mode === 'stall-close' && channels > 1) return; // the cancel: never answered
        const session = accept();
        session.on('exec', (acceptExec, _reject, info) => {
          stats.execs.push(info.command.slice(0, 40));
          onEvent({ event: 'exec', command: info.command.slice(0, 40) });
          const ch = acceptExec();
          if (info.command === 'echo alive') {
            ch.write('alive\n');
            ch.exit(0);
            ch.end();
            return;
          }
          runner(ch);
        });
      });
    });
  };

  const runner = (ch: ServerChannel): void => {
    ch.on('data', () => undefined); // swallow the payload
    ch.stderr.on('error', () => undefined);
    ch.on('error', () => undefined);
    switch (o.mode) {
      case 'stall-open':
        return;
      case 'stall-close': {
        ch.write(`${TAG} journal new\n${TAG} pid 4242\n`);
        // ssh2 answers a client's CHANNEL_CLOSE by closing too: a wedged server does not.
        ch.close = () => ch;
        ch.end = () => ch;
        return;
      }
      case 'flood': {
        const line = Buffer.from(`${'x'.repeat(1023)}\n`);
        const block = Buffer.concat(Array.from({ length: 64 }, () => line));
        let open = true;
        ch.on('close', () => (open = false));
        const pump = (): void => {
          while (open && ch.write(block)) ch.stderr.write(block);
          if (open) ch.once('drain', pump);
        };
        pump();
        return;
      }
      case 'forge-deep': {
        const n = 100_000;
        const out = Buffer.from(`{"a":${'['.repeat(n)}${']'.repeat(n)}}`);
        const tail = Buffer.from('forged\n');
        forge(ch, `${TAG} pid 1\n${TAG} result 0 sent ${out.length} 7 ${tail.length} exited\n`, [
          out,
          tail,
        ]);
        return;
      }
      case 'forge-line': {
        forge(ch, `${TAG} journal new\n${TAG} ${'forged '.repeat(600 * 146)}\n`, []);
        return;
      }
      case 'forge-tail': {
        const junk = Buffer.alloc(4096);
        for (let i = 0; i < junk.length; i++) junk[i] = (i * 131 + 7) % 256;
        const lines = Buffer.from(
          `${TAG} result 0 sent 2 0 0 exited\n{}\n\u001b[2J\u0007${TAG} error busy forged\n`,
        );
        const tail = Buffer.concat([junk, lines]);
        const wall = Buffer.from('{"forged": true}');
        forge(
          ch,
          // It claims 2 bytes of output but the bytes that follow are a longer object.
          `${TAG} result 0 sent 2 ${tail.length} ${tail.length} exited\n`,
          [wall, tail],
        );
        return;
      }
      case 'swap-key': {
        forge(ch, `${TAG} journal new\n${TAG} result 0 absent 0 3 3 exited\n`, [
          Buffer.from('ok\n'),
        ]);
        return;
      }
    }
  };

  const forge = (ch: ServerChannel, head: string, rest: Buffer[]): void => {
    ch.write(head);
    for (const b of rest) ch.write(b);
    ch.exit(0);
    ch.end();
  };

  // swap-key: one listening socket, the key picked per connection. ssh2 fixes the host key per
  // Server, so two Servers share the accepted sockets.
  const a = serve(first);
  const b = o.mode === 'swap-key' ? serve(second) : a;
  const { createServer } = await import('node:net');
  let accepted = 0;
  const tcp = createServer((sock) => {
    accepted++;
    const target = accepted > swapAfter ? b : a;
    target.injectSocket(sock);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(o.port, o.host, () => {
      tcp.off('error', reject);
      resolve();
    });
  });
  const port = (tcp.address() as AddressInfo).port;
  onEvent({ event: 'listening', port });
  return {
    port,
    stats,
    close: async () => {
      for (const c of conns) c.end();
      await new Promise<void>((r) =>
        tcp.close(() => {
          r();
        }),
      );
      for (const s of servers) s.close();
    },
  };
}

// As a process (inside a lab node's namespace): options as one JSON argument, events on stdout.
if (process.argv[1] === import.meta.filename) {
  const o = JSON.parse(process.argv[2] ?? '{}') as HostileOptions;
  const say = (e: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify(e)}\n`);
  };
  startHostileSsh(o, say).then(
    (s) => {
      const stop = (): void => {
        void s.close().finally(() => process.exit(0));
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    },
    (e: unknown) => {
      say({ event: 'error', message: (e as Error).message });
      process.exit(1);
    },
  );
}
