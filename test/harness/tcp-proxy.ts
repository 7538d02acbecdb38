/**
 * A TCP proxy on loopback that a test controls, to cut one process's path to a server without
 * touching the server: `blackhole()` keeps every connection open and accepts new ones but
 * forwards nothing either way (a partition, not a refusal: the client sees no error, only
 * silence), `restore()` forwards again on new connections. Traffic goes only to `target`.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export class TcpProxy {
  readonly port: number;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private blackholed = false;

  private constructor(server: Server, port: number) {
    this.server = server;
    this.port = port;
  }

  /** Listens on 127.0.0.1 (a free port) and forwards each connection to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const holder: { proxy?: TcpProxy } = {};
    const server = createServer((client) => {
      holder.proxy?.accept(client, target);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        resolve();
      });
    });
    const proxy = new TcpProxy(server, (server.address() as AddressInfo).port);
    holder.proxy = proxy;
    return proxy;
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
  }

  private accept(client: Socket, target: { host: string; port: number }): void {
    this.track(client);
    if (this.blackholed) {
      // Accepted and never answered: what a client sees behind a partition.
      client.on('data', () => undefined);
      return;
    }
    const upstream = connect(target.port, target.host);
    this.track(upstream);
    client.on('data', (d) => {
      if (!this.blackholed) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!this.blackholed) client.write(d);
    });
    // A close on either side is passed on, unless the path is black-holed (nothing passes then).
    client.on('close', () => {
      if (!this.blackholed) upstream.destroy();
    });
    upstream.on('close', () => {
      if (!this.blackholed) client.destroy();
    });
  }

  /** From now on nothing is forwarded, on open connections or new ones. */
  blackhole(): void {
    this.blackholed = true;
  }

  /** New connections are forwarded again (the black-holed ones stay dead). */
  restore(): void {
    this.blackholed = false;
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
    });
  }
}
