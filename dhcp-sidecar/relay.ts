/**
 * A byte relay between a TCP port and a Unix socket, for the lab and tests only: a sidecar alone
 * in its network namespace cannot reach an API server that listens on the host's loopback, but
 * Unix sockets are not namespaced. The host side listens on a Unix socket and connects to the API
 * server; the sidecar side (`--api-via-unix`) listens on its own loopback at the kubeconfig's
 * host:port, so the kubeconfig and the server certificate work unchanged.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';

function pipeBoth(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const end = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', end);
  b.on('error', end);
  a.on('close', end);
  b.on('close', end);
}

/** Host side: accepts on `path`, forwards to host:port. */
export async function unixToTcp(path: string, host: string, port: number): Promise<Server> {
  rmSync(path, { force: true });
  const s = createServer((c) => {
    pipeBoth(c, connect(port, host));
  });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(path, () => {
      resolve();
    });
  });
  return s;
}

/** Namespace side: accepts on host:port, forwards to the Unix socket at `path`. */
export async function tcpToUnix(host: string, port: number, path: string): Promise<Server> {
  const s = createServer((c) => {
    pipeBoth(c, connect(path));
  });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, host, () => {
      resolve();
    });
  });
  return s;
}
