/**
 * The provisioner API: routes mounted on the node API server (operator/api/server.ts) through its
 * `routes` hook, so they share its listener (and whatever TLS it gets).
 *
 *   POST /provision/v1/register   the discovery image registers a machine (§8.2): JSON
 *        {"mac", "address", "hardware": {...}, "agent"}; answers the Node's name, its node API
 *        token (for /api/v1/nodes/<name>/alive), its registration token and the operator's SSH
 *        public key for root. `Accept: text/plain` gives `key=value` lines for a shell agent.
 *        When the image booted on a BootEnv kernel variant that cannot see the whole machine
 *        (register.ts `variantShortfall`), the Node gets spec.kernelVariants off, the answer
 *        waits (at most {@link VARIANT_ACK_MS}) for the boot sidecar to acknowledge that
 *        generation and then says `reboot=<why>`: the machine boots again on the generic kernel.
 *   GET  /provision/v1/nodes/<name>/network   (the node's API token) its address on the
 *        provisioning network once the allocator has given it one: `address=<ip/prefix>` (empty
 *        while there is none yet). The agent then drops its pool lease for it (§8.2 step 6).
 *        `?wait=<s>` (at most {@link MAX_NETWORK_WAIT_S}) holds the answer until the address is
 *        there or the seconds pass: one request instead of a poll, each of which costs a
 *        machine under emulation a TLS handshake.
 *   GET  /provision/v1/nodes/<name>/files/<file>   (only from the node's own address) a per-node
 *        installer file (e.g. preseed.cfg) rendered from the template of that name in the Node's
 *        desired BootEnv (`spec.files`); recorded as an Event `InstallerFetched` on the Node.
 *   POST /provision/v1/nodes/<name>/installed   (the node's `install` token) the installer's
 *        completion callback: the boot environment goes back to `local`, the recorded SSH host
 *        key is forgotten (the installed system has a new one), Event `Installed`.
 *   GET  /provision/v1/nodes/<name>/bootenv   (the node's `install` token) `desired=` and
 *        `applied=` lines, so that the installer reboots only once `local` is acknowledged.
 *
 * Registration is accepted only from an address inside the provisioning Network's subnet
 * (`--provision-network`), is rate-limited per source address and overall (429 with
 * Retry-After), takes at most {@link MAX_REGISTER_BYTES} (413), and is decided by
 * ./register.ts: 400 for a malformed body, 401 for a wrong token, 403 for a foreign MAC, 409
 * for MACs of two Nodes. A refused request changes nothing.
 */
import { failpoint } from '../failpoints.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import ssh2 from 'ssh2';
import { HttpError, readLimited } from '../api/body.ts';
import type { ExtraRoute } from '../api/server.ts';
import type { BootEnv, Network, Node } from '../../generated/crowbar.ts';
import type { Recorder } from '../events.ts';
import { parseIp } from '../ipam/address.ts';
import { cidrContains, parseCidr } from '../ipam/ranges.ts';
import type { CrowbarClient } from '../kube/client.ts';
import { apiMessage, isConflict } from '../kube/errors.ts';
import type { Logger } from '../log.ts';
import { RateLimiter } from './ratelimit.ts';
import {
  humanBytes,
  parseRegistration,
  planRegistration,
  variantShortfall,
  type Registration,
  type TokenCheck,
} from './register.ts';
import { acknowledged } from './os-install.ts';
import { purposeToken, type PurposeTokens } from './tokens.ts';

/** Replaces {{ var }} with its value; unknown variables become empty (as the boot sidecar does). */
export function renderTemplate(t: string, vars: Readonly<Record<string, string>>): string {
  return t.replace(/\{\{\s*([A-Za-z][A-Za-z0-9]*)\s*\}\}/g, (_m, k: string) => vars[k] ?? '');
}

/** How long a registration that turned kernel variants off waits for the sidecar's word. */
export const VARIANT_ACK_MS = 30_000;

/** A hardware report of 64 disks and 64 NICs fits many times over. */
export const MAX_REGISTER_BYTES = 256 * 1024;

/** The longest `?wait=` of the network endpoint, in seconds. */
export const MAX_NETWORK_WAIT_S = 30;

/** A route on the node API server: true when it handled the request. */
export type ApiRoute = ExtraRoute;

export interface ProvisionerDeps {
  client: CrowbarClient;
  tokens: PurposeTokens;
  /** Makes sure the node's secret exists (the node-tokens controller does it too, later). */
  ensureToken(node: { name: string; uid: string | undefined }): Promise<void>;
  /** Whether `token` is the node's own node API token (operator/api/tokens.ts). */
  verifyNodeToken(fqdn: string, token: string): Promise<boolean>;
  getNode(name: string): Promise<Readonly<Node> | undefined>;
  /**
   * Resolves with the Node once `ready` holds for it (the informer's copy), or undefined when
   * `ms` pass or `signal` aborts first. Absent: the network endpoint answers at once.
   */
  waitForNode?(
    name: string,
    ready: (n: Readonly<Node>) => boolean,
    ms: number,
    signal: AbortSignal,
  ): Promise<Readonly<Node> | undefined>;
  /** Every Node (the informer's cache), for the MAC index. */
  nodes(): readonly Readonly<Node>[];
  network(name: string): Readonly<Network> | undefined;
  /** The provisioning Network (category admin), whose subnet may register. */
  provisionNetwork: string;
  /** The boot environment registered machines get (sledgehammer). */
  discoveryBootEnv: string;
  /** The DNS domain discovered Nodes are named in. */
  domain: string | undefined;
  /** A BootEnv from the API (the operator keeps no cache of them). */
  bootEnv(name: string): Promise<Readonly<BootEnv> | undefined>;
  /** The provisioner API's base URL as machines reach it (`--provisioner-url`). */
  provisionerUrl: string | undefined;
  /** root's authorized_keys line for the operator's key. */
  sshPublicKey(): Promise<string>;
  recorder: Recorder;
  fieldManager: string;
  log: Logger;
  now?: () => number;
  rate?: {
    perAddress: { burst: number; perSecond: number };
    all: { burst: number; perSecond: number };
  };
}

export function send(
  res: ServerResponse,
  status: number,
  body: object | string,
  headers: Record<string, string> = {},
): void {
  const text = typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    ...headers,
  });
  res.end(text);
}

/** The peer's IPv4 address as text (IPv4-mapped IPv6 unwrapped). */
export function peerAddress(req: IncomingMessage): string {
  return (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
}

function inSubnet(subnet: string | undefined, address: string): boolean {
  if (!subnet) return false;
  try {
    return cidrContains(parseCidr(subnet), parseIp(address));
  } catch {
    return false;
  }
}

function bearer(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (auth === undefined) return undefined;
  return /^Bearer ([\x21-\x7e]+)$/.exec(auth)?.[1] ?? '';
}

/** The operator's public key as an authorized_keys line, from its private key. */
export function publicKeyLine(privateKey: Buffer): string {
  const key: ssh2.ParsedKey | Error = ssh2.utils.parseKey(privateKey);
  if (key instanceof Error)
    throw new Error(`the operator's SSH key cannot be parsed: ${key.message}`);
  return `${key.type} ${key.getPublicSSH().toString('base64')} crowbar-operator`;
}

/**
 * The network endpoint's `?wait=` in seconds: 0 when absent, undefined when it is not a whole
 * number from 0 to {@link MAX_NETWORK_WAIT_S}.
 */
export function networkWaitSeconds(url: string): number | undefined {
  const q = url.indexOf('?');
  const w = new URLSearchParams(q < 0 ? '' : url.slice(q + 1)).get('wait');
  if (w === null) return 0;
  if (!/^\d{1,3}$/.test(w)) return undefined;
  const n = Number(w);
  return n <= MAX_NETWORK_WAIT_S ? n : undefined;
}

export function provisionerRoutes(d: ProvisionerDeps): ApiRoute {
  const log = d.log.child({ component: 'provisioner-api' });
  const now = d.now ?? Date.now;
  const limiter = new RateLimiter(
    d.rate?.perAddress ?? { burst: 5, perSecond: 0.2 },
    d.rate?.all ?? { burst: 50, perSecond: 10 },
    now(),
  );

  const owners = (reg: Registration): Map<string, Readonly<Node>> => {
    const macs = new Set([reg.mac, ...(reg.hardware.nics ?? []).map((n) => n.mac.toLowerCase())]);
    const m = new Map<string, Readonly<Node>>();
    for (const n of d.nodes())
      for (const mac of n.spec.macs ?? []) if (macs.has(mac)) m.set(mac, n);
    return m;
  };

  /**
   * Waits (at most `ms`) until `ready` holds for the informer's copy of Node `name`, while the
   * client stays connected: its going away ends the wait, so nothing is held for a closed
   * connection (`closed`). `node` is undefined when the wait ran out or there is no informer.
   */
  const waitConnected = async (
    res: ServerResponse,
    name: string,
    ready: (n: Readonly<Node>) => boolean,
    ms: number,
  ): Promise<{ node: Readonly<Node> | undefined; closed: boolean }> => {
    if (!d.waitForNode) return { node: undefined, closed: false };
    const gone = new AbortController();
    const onClose = (): void => {
      gone.abort();
    };
    res.once('close', onClose);
    try {
      const node = await d.waitForNode(name, ready, ms, gone.signal);
      return { node, closed: gone.signal.aborted };
    } finally {
      res.off('close', onClose);
    }
  };

  /**
   * A machine that booted a kernel variant too small for it: its Node now has kernelVariants
   * off (generation `node`'s). Waits until the boot sidecar has acknowledged that generation,
   * so the next boot cannot be served the variant again, and returns why it must reboot; or
   * returns undefined (and says why in an Event) when it must not: variants were already off
   * (a stale sidecar served the variant: one more boot would not help) or no acknowledgement came.
   */
  const variantFallback = async (
    req: IncomingMessage,
    res: ServerResponse,
    node: Readonly<Node>,
    shortfall: string,
    wasOff: boolean,
  ): Promise<string | undefined> => {
    const name = node.metadata.name ?? '';
    const target = { kind: 'Node' as const, name, uid: node.metadata.uid };
    if (wasOff) {
      d.recorder.warning(
        target,
        'KernelVariantShortfall',
        `${shortfall}, though spec.kernelVariants is off: the boot sidecar served the variant anyway (is its view of this Node stale?); the hardware facts miss what that kernel cannot see`,
      );
      return undefined;
    }
    const bootEnv = node.spec.bootEnv ?? d.discoveryBootEnv;
    const generation = node.metadata.generation ?? 0;
    const r = acknowledged(await d.getNode(name), bootEnv, generation)
      ? { node, closed: false }
      : await waitConnected(res, name, (n) => acknowledged(n, bootEnv, generation), VARIANT_ACK_MS);
    if (r.closed) return undefined;
    if (!r.node) {
      d.recorder.warning(
        target,
        'KernelVariantShortfall',
        `${shortfall}; spec.kernelVariants is now off, but the boot sidecar did not acknowledge generation ${String(generation)} within ${String(VARIANT_ACK_MS / 1000)} s, so the machine stays up on the variant: reboot it into discovery once the sidecar serves it`,
      );
      return undefined;
    }
    d.recorder.normal(
      target,
      'KernelVariantOff',
      `${shortfall}: spec.kernelVariants set to off; the machine boots again on ${bootEnv}'s own kernel`,
    );
    log.info(
      { node: name, why: shortfall, from: peerAddress(req) },
      'kernel variant too small: rebooting',
    );
    return `${shortfall}; booting ${bootEnv}'s own kernel`;
  };

  const register = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST') throw new HttpError(405, 'use POST', { allow: 'POST' });
    const from = peerAddress(req);
    const net = d.network(d.provisionNetwork);
    if (!net)
      throw new HttpError(
        503,
        `the provisioning Network ${d.provisionNetwork} does not exist: create it (or set --provision-network)`,
      );
    if (!inSubnet(net.spec.subnet, from))
      throw new HttpError(
        403,
        `registration is accepted only from the provisioning network ${d.provisionNetwork} (${net.spec.subnet ?? 'no subnet'}), not from ${from}`,
      );
    const rate = limiter.take(from, now());
    if (!rate.ok)
      throw new HttpError(429, `too many registrations; retry in ${rate.retryAfterSeconds} s`, {
        'retry-after': String(rate.retryAfterSeconds),
      });
    if (d.domain === undefined)
      throw new HttpError(503, 'the operator has no --domain: discovered Nodes cannot be named');
    const body = await readLimited(req, MAX_REGISTER_BYTES);
    let reg: Registration;
    try {
      reg = parseRegistration(body.toString('utf8'));
    } catch (e) {
      throw new HttpError(400, (e as Error).message);
    }
    const own = owners(reg);
    const presented = bearer(req);
    const owner = own.get(reg.mac) ?? [...own.values()][0];
    let token: TokenCheck = 'none';
    if (presented !== undefined) {
      token =
        owner && (await d.tokens.verify(owner.metadata.name ?? '', 'register', presented))
          ? 'valid'
          : 'invalid';
    }
    const fromOwnAddress =
      owner?.status?.addresses?.some((a) => a.address.split('/')[0] === from) ?? false;
    const plan = planRegistration({ reg, domain: d.domain, owners: own, token, fromOwnAddress });
    if (plan.action === 'refuse') {
      log.warn(
        { mac: reg.mac, from, status: plan.status, why: plan.message },
        'registration refused',
      );
      throw new HttpError(plan.status, plan.message);
    }
    // Decided before the Node is written, so that turning variants off costs no extra write.
    const shortfall = variantShortfall(reg);
    const variantsOff = shortfall === undefined ? {} : { kernelVariants: 'off' as const };
    let node: Readonly<Node>;
    if (plan.action === 'create') {
      try {
        node = await d.client.create(
          'Node',
          {
            metadata: { name: plan.name, labels: { 'crowbar.dev/discovered': 'true' } },
            spec: {
              macs: plan.macs,
              bootEnv: d.discoveryBootEnv,
              available: true,
              ...variantsOff,
            },
          },
          d.fieldManager,
        );
      } catch (e) {
        // Two registrations of one new machine at once: the second is told to retry.
        if (isConflict(e)) throw new HttpError(409, `node ${plan.name} was just created; retry`);
        throw e;
      }
    } else {
      node = await d.client.mergePatch(
        'Node',
        plan.name,
        { spec: { macs: plan.macs, ...variantsOff } },
        d.fieldManager,
      );
    }
    // Its address on the provisioning network, as every address comes: the network's role bound.
    try {
      await d.client.create(
        'NodeRole',
        {
          metadata: { name: `network-${d.provisionNetwork}.${plan.name}` },
          spec: {
            role: `network-${d.provisionNetwork}`,
            node: plan.name,
            deployment: node.spec.deployment ?? 'system',
          },
        },
        d.fieldManager,
      );
    } catch (e) {
      if (!isConflict(e)) throw e;
    }
    const t = Date.now();
    // A fresh boot of the discovery image has fresh SSH host keys: trust the next one seen.
    await d.client.mergePatchStatus(
      'Node',
      plan.name,
      {
        status: {
          hardware: {
            ...reg.hardware,
            ...(reg.hardware.memoryBytes === undefined
              ? {}
              : { memory: humanBytes(reg.hardware.memoryBytes) }),
            address: from,
            registeredAt: new Date(t - (t % 1000)).toISOString().replace('.000Z', 'Z'),
            ...(reg.agent === undefined ? {} : { agent: reg.agent }),
          },
          sshHostKey: null,
        },
      },
      d.fieldManager,
    );
    await d.ensureToken({ name: plan.name, uid: node.metadata.uid });
    const secret = await d.tokens.secret(plan.name);
    if (secret === undefined) throw new Error(`node ${plan.name} has no token Secret`);
    const registerToken = await d.tokens.token(plan.name, 'register');
    const sshkey = await d.sshPublicKey();
    d.recorder.normal(
      { kind: 'Node', name: plan.name, uid: node.metadata.uid },
      plan.action === 'create' ? 'Discovered' : 'Rediscovered',
      `registered by the discovery image from ${from} (MAC ${reg.mac}, ${reg.hardware.cpus ?? '?'} CPUs, ${reg.hardware.memoryBytes === undefined ? '?' : humanBytes(reg.hardware.memoryBytes)} memory, ${(reg.hardware.disks ?? []).length} disks)`,
    );
    log.info({ node: plan.name, mac: reg.mac, from, action: plan.action }, 'machine registered');
    const reboot =
      shortfall === undefined
        ? undefined
        : await variantFallback(req, res, node, shortfall, owner?.spec.kernelVariants === 'off');
    if (res.destroyed) return;
    // The node's `alive` token, never its secret (the key of its other purposes' tokens).
    const answer = {
      name: plan.name,
      token: purposeToken(secret, 'alive'),
      registerToken: registerToken ?? '',
      sshkey,
      ...(reboot === undefined ? {} : { reboot }),
    };
    const status = plan.action === 'create' ? 201 : 200;
    if (/\btext\/plain\b/.test(req.headers.accept ?? ''))
      send(
        res,
        status,
        Object.entries(answer)
          .map(([k, v]) => `${k}=${v}\n`)
          .join(''),
      );
    else send(res, status, answer);
  };

  const provisionAddress = (node: Readonly<Node>) =>
    node.status?.addresses?.find(
      (x) => x.network === d.provisionNetwork && x.family !== 'ipv6' && !x.address.includes(':'),
    )?.address;

  const network = async (req: IncomingMessage, res: ServerResponse, name: string) => {
    if (req.method !== 'GET') throw new HttpError(405, 'use GET', { allow: 'GET' });
    const wait = networkWaitSeconds(req.url ?? '');
    if (wait === undefined)
      throw new HttpError(
        400,
        `wait must be a whole number of seconds, 0 to ${MAX_NETWORK_WAIT_S}`,
      );
    let node = await d.getNode(name);
    if (!node) throw new HttpError(404, `node ${name} not found`);
    const t = bearer(req);
    if (t === undefined || t === '' || !(await d.verifyNodeToken(name, t)))
      throw new HttpError(401, `a valid bearer token of node ${name} is required`, {
        'www-authenticate': 'Bearer realm="crowbar-node"',
      });
    if (provisionAddress(node) === undefined && wait > 0 && d.waitForNode) {
      const r = await waitConnected(
        res,
        name,
        (n) => provisionAddress(n) !== undefined,
        wait * 1000,
      );
      if (r.closed) return;
      node = r.node ?? node;
    }
    send(res, 200, `address=${provisionAddress(node) ?? ''}\n`);
  };

  const ownAddress = (node: Readonly<Node>, from: string): boolean =>
    node.status?.addresses?.some((a) => a.address.split('/')[0] === from) ?? false;

  const needNode = async (name: string): Promise<Readonly<Node>> => {
    const node = await d.getNode(name);
    if (!node) throw new HttpError(404, `node ${name} not found`);
    return node;
  };

  const needInstallToken = async (req: IncomingMessage, name: string): Promise<void> => {
    const t = bearer(req);
    if (t === undefined || t === '' || !(await d.tokens.verify(name, 'install', t)))
      throw new HttpError(401, `the install token of node ${name} is required`, {
        'www-authenticate': 'Bearer realm="crowbar-install"',
      });
  };

  const file = async (req: IncomingMessage, res: ServerResponse, name: string, f: string) => {
    if (req.method !== 'GET') throw new HttpError(405, 'use GET', { allow: 'GET' });
    const node = await needNode(name);
    const from = peerAddress(req);
    if (!ownAddress(node, from))
      throw new HttpError(
        403,
        `node ${name}'s installer files are served only to its own address, not ${from}`,
      );
    const envName = node.spec.bootEnv ?? 'local';
    const env = await d.bootEnv(envName);
    const tpl = env?.spec.files?.find((x) => x.name === f);
    if (!tpl)
      throw new HttpError(404, `boot environment ${envName} of node ${name} has no file ${f}`);
    const secret = await d.tokens.secret(name);
    if (secret === undefined) throw new HttpError(503, `node ${name} has no token yet; retry`);
    const vars: Record<string, string> = {
      name,
      hostname: name.split('.')[0] ?? name,
      domain: name.split('.').slice(1).join('.'),
      mac: node.spec.macs?.[0] ?? '',
      address: from,
      api: d.provisionerUrl ?? '',
      bootEnv: envName,
      nodeToken: purposeToken(secret, 'alive'),
      installToken: purposeToken(secret, 'install'),
      sshKey: await d.sshPublicKey(),
    };
    const body = renderTemplate(tpl.template, vars);
    // The install run's journal (ADR 0022): the installer's first fetch is the sign that the
    // power cycle happened, which a run resumed after an operator restart waits for.
    const rec = node.status?.install;
    if (rec?.target === envName && (rec.phase === 'rebooting' || rec.phase === 'rebooted'))
      await d.client.mergePatchStatus(
        'Node',
        name,
        { status: { install: { ...rec, phase: 'fetched', at: new Date().toISOString() } } },
        d.fieldManager,
      );
    d.recorder.normal(
      { kind: 'Node', name, uid: node.metadata.uid },
      'InstallerFetched',
      `the installer of ${envName} fetched ${f} from ${from}`,
    );
    log.info({ node: name, file: f, bootEnv: envName, from }, 'installer file served');
    send(res, 200, body);
  };

  const installed = async (req: IncomingMessage, res: ServerResponse, name: string) => {
    if (req.method !== 'POST') throw new HttpError(405, 'use POST', { allow: 'POST' });
    const node = await needNode(name);
    await needInstallToken(req, name);
    await readLimited(req, 4096);
    const was = node.spec.bootEnv ?? '';
    const rec = node.status?.install;
    // Journalled first (ADR 0022): once the callback is recorded, no resumed run sets the
    // installer again. A crash before the spec write leaves the installer without an answer; it
    // calls again (late.sh retries) and this handler is idempotent.
    await d.client.mergePatchStatus(
      'Node',
      name,
      {
        status: {
          sshHostKey: null,
          ...(rec?.target === was
            ? { install: { ...rec, phase: 'installed', at: new Date().toISOString() } }
            : {}),
        },
      },
      d.fieldManager,
    );
    failpoint('provisioner/installed-journalled');
    await d.client.mergePatch('Node', name, { spec: { bootEnv: 'local' } }, d.fieldManager);
    d.recorder.normal(
      { kind: 'Node', name, uid: node.metadata.uid },
      'Installed',
      `the installer of ${was} reported completion from ${peerAddress(req)}; boot environment set to local`,
    );
    log.info({ node: name, bootEnv: was }, 'installation complete');
    send(res, 200, { node: name, bootEnv: 'local' });
  };

  const bootenv = async (req: IncomingMessage, res: ServerResponse, name: string) => {
    if (req.method !== 'GET') throw new HttpError(405, 'use GET', { allow: 'GET' });
    const node = await needNode(name);
    await needInstallToken(req, name);
    send(
      res,
      200,
      `desired=${node.spec.bootEnv ?? ''}\napplied=${node.status?.bootEnv?.applied ?? ''}\n`,
    );
  };

  return async (req, res, path) => {
    if (!path.startsWith('/provision/')) return false;
    try {
      const nodeNet = /^\/provision\/v1\/nodes\/([a-z0-9][-a-z0-9.]{0,251}[a-z0-9])\/network$/.exec(
        path,
      );
      const m =
        /^\/provision\/v1\/nodes\/([a-z0-9][-a-z0-9.]{0,251}[a-z0-9])\/(installed|bootenv|files\/([A-Za-z0-9][-A-Za-z0-9._]{0,252}))$/.exec(
          path,
        );
      if (path === '/provision/v1/register') await register(req, res);
      else if (nodeNet?.[1] !== undefined) await network(req, res, nodeNet[1]);
      else if (m?.[1] !== undefined && m[2] === 'installed') await installed(req, res, m[1]);
      else if (m?.[1] !== undefined && m[2] === 'bootenv') await bootenv(req, res, m[1]);
      else if (m?.[1] !== undefined && m[3] !== undefined) await file(req, res, m[1], m[3]);
      else throw new HttpError(404, 'no such endpoint');
    } catch (e) {
      if (e instanceof HttpError) {
        send(res, e.status, { error: e.message }, { ...e.headers, connection: 'close' });
      } else {
        log.error({ err: e }, 'provisioner API request failed');
        send(res, 500, { error: `internal error: ${apiMessage(e)}` }, { connection: 'close' });
      }
    }
    return true;
  };
}
