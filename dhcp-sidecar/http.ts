/**
 * The boot HTTP server: per-node iPXE scripts and files rendered from BootEnvs, first-stage
 * binaries (/boot/), kernels and initrds (/files/) with Range requests, plus /healthz, /readyz
 * and /metrics. Read-only; no path leaves its root.
 */
import { createReadStream, readFileSync, realpathSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isAbsolute, join, relative } from 'node:path';
import type { Backend } from './backend.ts';
import { caInitrd, CA_INITRD_NAME, CA_INITRD_PATH } from './ca-initrd.ts';
import type { Logger, Metrics } from './metrics.ts';
import type { Pool } from './pool.ts';
import {
  chooseKernel,
  discoveryName,
  PCI_NIC,
  ipxeScript,
  nodeFile,
  type ExtraInitrd,
  type RenderVars,
} from './render.ts';

export interface HttpOptions {
  host: string;
  port: number;
  /** First-stage binaries (Debian's /usr/lib/ipxe). */
  bootRoot: string;
  /** Kernels, initrds and other files BootEnvs name by path. */
  fileRoot: string;
  serverIp: string;
  httpBase: string;
  /**
   * With DHCPv6 on: the sidecar's IPv6 address and http://[it]:port. A request that arrives over
   * IPv6 gets scripts whose URLs and {{server}}/{{address}} are IPv6, so an IPv6-only machine
   * can follow them.
   */
  serverIp6?: string;
  httpBase6?: string;
  discoveryBootEnv: string;
  /**
   * The node API's CA (PEM). Set: served as an initrd holding /etc/crowbar/ca.pem at
   * CA_INITRD_PATH and added to every netbooted kernel (ADR 0019). Read per request, so a
   * rotated CA (a remounted Secret) is served without a restart.
   */
  caFile?: string;
  backend: Backend;
  pool: () => Pool | undefined;
  metrics: Metrics;
  log: Logger;
  ready: () => boolean;
  /** Called when a node's iPXE script is served (for logs and tests). */
  onScript?: (mac: string, bootEnv: string) => void;
}

const MAC = /^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/;

/** Resolves `rel` under `root`, or undefined when it would leave it (lexically or by symlink). */
export function safePath(root: string, rel: string): string | undefined {
  if (rel.includes('\0')) return undefined;
  const parts = rel.split(/[\\/]+/).filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) return undefined;
  const full = join(root, ...parts);
  try {
    const real = realpathSync(full);
    const realRoot = realpathSync(root);
    const r = relative(realRoot, real);
    if (r.startsWith('..') || isAbsolute(r)) return undefined;
    return real;
  } catch {
    return undefined;
  }
}

/** RFC 9110 §14: one byte range, or 'bad' when unsatisfiable, or undefined for the whole file. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'bad' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined; // several ranges or other units: send the whole file
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return 'bad';
  let start: number;
  let end: number;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'bad';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size || start > end) return 'bad';
  return { start, end };
}

export class BootHttpServer {
  private readonly o: HttpOptions;
  private server: Server | undefined;
  port = 0;

  constructor(o: HttpOptions) {
    this.o = o;
  }

  async start(): Promise<void> {
    const s = createServer((req, res) => {
      this.route(req, res);
    });
    s.keepAliveTimeout = 5000;
    s.headersTimeout = 10_000;
    s.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(this.o.port, this.o.host, () => {
        s.off('error', reject);
        resolve();
      });
    });
    this.server = s;
    this.port = (s.address() as AddressInfo).port;
    this.o.log.info({ host: this.o.host, port: this.port }, 'boot http listening');
  }

  /** A location is served when it is a URL (someone else's) or a file under our file root. */
  private readonly available = (location: string): boolean => {
    if (/^https?:\/\//.test(location)) return true;
    const p = safePath(this.o.fileRoot, location.replace(/^\/+/, ''));
    try {
      return p !== undefined && statSync(p).isFile();
    } catch {
      return false;
    }
  };

  private vars(mac: string, req: IncomingMessage, url?: URL): RenderVars {
    const r = this.o.backend.reservation(mac);
    const local = req.socket.localAddress ?? '';
    // The boot NIC's PCI IDs, as our DHCP answer put them in the script's URL (boot.ts);
    // anything else in that place is ignored (it only ever selects among the BootEnv's variants).
    const pci = url?.searchParams.get('pci') ?? '';
    const nic = {
      ...(PCI_NIC.test(pci) ? { pciNic: pci } : {}),
      ...(r?.kernelVariants === false ? { variants: false } : {}),
    };
    // Over IPv6 (not an IPv4-mapped address on the dual-stack socket): the IPv6 names.
    const v6 =
      this.o.serverIp6 !== undefined &&
      this.o.httpBase6 !== undefined &&
      local.includes(':') &&
      !local.startsWith('::ffff:');
    if (v6)
      return {
        name: r?.node ?? discoveryName(mac),
        mac,
        address: r?.address6 ?? '',
        server: this.o.serverIp6 ?? '',
        http: this.o.httpBase6 ?? '',
        bootEnv: r?.bootEnv ?? this.o.discoveryBootEnv,
        ...nic,
      };
    const lease = this.o.pool()?.leaseOf(mac);
    return {
      name: r?.node ?? discoveryName(mac),
      mac,
      address: r?.address ?? lease?.address ?? '',
      server: this.o.serverIp,
      http: this.o.httpBase,
      bootEnv: r?.bootEnv ?? this.o.discoveryBootEnv,
      ...nic,
    };
  }

  private done(res: ServerResponse, route: string, code: number, body?: string, type?: string) {
    this.o.metrics.httpRequests.inc({ route, code: String(code) });
    res.statusCode = code;
    if (body !== undefined) {
      res.setHeader('Content-Type', type ?? 'text/plain; charset=utf-8');
      res.setHeader('Content-Length', Buffer.byteLength(body));
    }
    res.end(body);
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    let path: string;
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://x');
      path = decodeURIComponent(url.pathname);
    } catch {
      this.done(res, 'bad', 400, 'bad request\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      this.done(res, 'method', 405, 'read-only\n');
      return;
    }
    if (path === '/healthz') {
      this.done(res, 'healthz', 200, 'ok\n');
      return;
    }
    if (path === '/readyz') {
      if (this.o.ready()) this.done(res, 'readyz', 200, 'ok\n');
      else this.done(res, 'readyz', 503, 'caches not synced\n');
      return;
    }
    if (path === '/metrics') {
      this.o.metrics.registry
        .metrics()
        .then((text) => {
          this.done(res, 'metrics', 200, text, this.o.metrics.registry.contentType);
        })
        .catch((err: unknown) => {
          this.o.log.error({ err }, 'metrics failed');
          this.done(res, 'metrics', 500, 'metrics failed\n');
        });
      return;
    }
    const ipxe = /^\/ipxe\/([^/]+)$/.exec(path);
    if (ipxe) {
      const mac = (ipxe[1] ?? '').toLowerCase().replace(/-/g, ':');
      if (!MAC.test(mac)) {
        this.done(res, 'ipxe', 404, 'no such MAC\n');
        return;
      }
      const v = this.vars(mac, req, url);
      this.o.onScript?.(mac, v.bootEnv);
      const env = this.o.backend.bootEnv(v.bootEnv);
      // Chosen once: the choice stats the variant's files under the file root.
      const k = env ? chooseKernel(env, v, this.available) : undefined;
      this.o.log.info(
        { mac, bootEnv: v.bootEnv, node: v.name, nic: v.pciNic, variant: k?.variant || undefined },
        'ipxe script served',
      );
      const extra: ExtraInitrd | undefined =
        this.o.caFile === undefined
          ? undefined
          : { url: `${v.http}${CA_INITRD_PATH}`, name: CA_INITRD_NAME };
      this.done(res, 'ipxe', 200, ipxeScript(env, v, extra, k));
      return;
    }
    if (path === CA_INITRD_PATH) {
      this.caInitrd(req, res);
      return;
    }
    const nf = /^\/nodes\/([^/]+)\/([^/]+)$/.exec(path);
    if (nf) {
      const mac = (nf[1] ?? '').toLowerCase().replace(/-/g, ':');
      if (!MAC.test(mac)) {
        this.done(res, 'node-file', 404, 'no such MAC\n');
        return;
      }
      const v = this.vars(mac, req);
      const body = nodeFile(this.o.backend.bootEnv(v.bootEnv), nf[2] ?? '', v, this.available);
      if (body === undefined)
        this.done(res, 'node-file', 404, 'no such file in this boot environment\n');
      else this.done(res, 'node-file', 200, body);
      return;
    }
    if (path.startsWith('/boot/')) {
      this.file(req, res, 'boot', this.o.bootRoot, path.slice(6));
      return;
    }
    if (path.startsWith('/files/')) {
      this.file(req, res, 'files', this.o.fileRoot, path.slice(7));
      return;
    }
    this.done(res, 'other', 404, 'not found\n');
  }

  private caInitrd(req: IncomingMessage, res: ServerResponse): void {
    if (this.o.caFile === undefined) {
      this.done(res, 'ca', 404, 'no CA configured (--api-ca-file)\n');
      return;
    }
    let body: Buffer;
    try {
      body = caInitrd(readFileSync(this.o.caFile, 'utf8'));
    } catch (err) {
      this.o.log.error({ err, file: this.o.caFile }, 'ca initrd failed');
      this.done(res, 'ca', 500, 'the CA file is unreadable or holds no CA certificate\n');
      return;
    }
    this.o.metrics.httpRequests.inc({ route: 'ca', code: '200' });
    res.statusCode = 200;
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Content-Length', body.length);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private file(
    req: IncomingMessage,
    res: ServerResponse,
    route: string,
    root: string,
    rel: string,
  ): void {
    const full = safePath(root, rel);
    let size: number;
    try {
      if (!full) throw new Error('outside root');
      const st = statSync(full);
      if (!st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      this.done(res, route, 404, 'not found\n');
      return;
    }
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Content-Type', 'application/octet-stream');
    const range = parseRange(req.headers.range, size);
    if (range === 'bad') {
      res.setHeader('Content-Range', `bytes */${size}`);
      this.done(res, route, 416, 'range not satisfiable\n');
      return;
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    const code = range ? 206 : 200;
    if (range) res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
    res.setHeader('Content-Length', size === 0 ? 0 : end - start + 1);
    res.statusCode = code;
    this.o.metrics.httpRequests.inc({ route, code: String(code) });
    if (req.method === 'HEAD' || size === 0) {
      res.end();
      return;
    }
    const stream = createReadStream(full, { start, end });
    stream.on('error', (err) => {
      this.o.log.warn({ err, path: rel }, 'file read failed');
      res.destroy(err);
    });
    stream.pipe(res);
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => {
      s.close(() => {
        r();
      });
    });
  }
}
