/**
 * Registration by the discovery image (CROWBAR-MODEL.md §8.2), pure: the body's shape, the
 * Node's name, and whether a registration creates a Node, updates one, or is refused.
 *
 * Who may register what:
 * - a MAC no Node has: anyone on the provisioning network (the API checks the address and the
 *   rate); the Node is `d<mac with - for :>.<domain>`;
 * - a MAC a Node already has (a reboot into discovery): that Node is updated, never a second one
 *   made, when the request carries the Node's registration token, or, without a token, comes
 *   from one of the Node's own addresses (the DHCP server gives a known MAC its reservation);
 * - a presented token that is not the Node's is refused (401), whatever the address;
 * - MACs that belong to two different Nodes are refused (409): one machine, one Node.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import yaml from 'js-yaml';
import type { Node, NodeStatus } from '../../generated/crowbar.ts';

export type Hardware = NonNullable<NodeStatus['hardware']>;

export interface Registration {
  mac: string;
  /** The address the machine says DHCP gave it (informational; the socket's address decides). */
  address: string | undefined;
  hardware: Hardware;
  agent: string | undefined;
  /** The BootEnv kernel variant the image booted on (crowbar.variant=), if any. */
  variant: string | undefined;
}

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

/** Removes the CRD-only keywords so that ajv compiles a structural schema as written. */
function plain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v !== 'object' || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (!k.startsWith('x-kubernetes-')) out[k] = plain(x);
  return out;
}

let validator: ValidateFunction<Hardware> | undefined;

/** ajv over the Node CRD's own status.hardware schema (crds/ is the single source of truth). */
export function hardwareValidator(): ValidateFunction<Hardware> {
  if (validator) return validator;
  const crd = yaml.load(
    readFileSync(join(import.meta.dirname, '..', '..', 'crds', 'nodes.crowbar.dev.yaml'), 'utf8'),
  ) as {
    spec: {
      versions: {
        schema: { openAPIV3Schema: { properties: { status: { properties: object } } } };
      }[];
    };
  };
  const status = crd.spec.versions[0]?.schema.openAPIV3Schema.properties.status.properties as
    Record<string, unknown> | undefined;
  const ajv = new Ajv({ allErrors: false, strict: false });
  addFormats.default(ajv);
  validator = ajv.compile<Hardware>({
    ...(plain(status?.['hardware']) as object),
    additionalProperties: false,
  });
  return validator;
}

/** The body of POST /provision/v1/register, checked; throws an Error that says what is wrong. */
export function parseRegistration(text: string): Registration {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error('the body must be JSON: {"mac": "52:54:00:..", "hardware": {...}}');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Error('the body must be a JSON object: {"mac": "52:54:00:..", "hardware": {...}}');
  const o = v as Record<string, unknown>;
  const mac = typeof o['mac'] === 'string' ? o['mac'].toLowerCase() : '';
  if (!MAC.test(mac)) throw new Error('mac must be a MAC address like 52:54:00:12:34:56');
  const hw = o['hardware'] ?? {};
  const validate = hardwareValidator();
  // Fields the server sets itself are not the machine's to send.
  if (typeof hw === 'object')
    for (const k of ['memory', 'address', 'registeredAt', 'agent'])
      if (k in hw) throw new Error(`hardware.${k} is set by the server; do not send it`);
  if (!validate(hw)) {
    const e = validate.errors?.[0];
    throw new Error(`hardware${e?.instancePath ?? ''} ${e?.message ?? 'is not valid'}`);
  }
  const address = typeof o['address'] === 'string' ? o['address'].slice(0, 64) : undefined;
  const agent = typeof o['agent'] === 'string' ? o['agent'].slice(0, 64) : undefined;
  const variant = o['variant'] ?? '';
  if (typeof variant !== 'string' || (variant !== '' && !VARIANT.test(variant)))
    throw new Error('variant must be a BootEnv kernel variant name like virtio (or empty)');
  return { mac, address, hardware: hw, agent, variant: variant || undefined };
}

const VARIANT = /^[a-z0-9][-a-z0-9]{0,62}$/;

/**
 * Why a machine that booted the discovery image on a kernel variant must boot it again on the
 * BootEnv's own kernel, or undefined when the variant saw enough: a network controller no driver
 * claimed (a NIC missing from the facts), or a storage controller no driver claimed while no
 * disk was seen (the machine's disks are behind it). An unclaimed storage controller beside
 * seen disks is usually an empty one (q35's built-in AHCI) and is only reported.
 */
export function variantShortfall(reg: Registration): string | undefined {
  if (reg.variant === undefined) return undefined;
  const u = reg.hardware.unclaimed ?? [];
  const nets = u.filter((d) => d.class.startsWith('02'));
  const storage = u.filter((d) => d.class.startsWith('01'));
  const list = (ds: typeof u) =>
    ds.map((d) => `${d.address} (${d.vendor ?? '?'}:${d.device ?? '?'})`).join(', ');
  if (nets.length > 0)
    return `kernel variant ${reg.variant} has no driver for network controller ${list(nets)}`;
  if (storage.length > 0 && (reg.hardware.disks ?? []).length === 0)
    return `kernel variant ${reg.variant} sees no disk and has no driver for storage controller ${list(storage)}`;
  return undefined;
}

/** §8.2: `d<mac, : as ->.<domain>`. */
export function discoveredName(mac: string, domain: string): string {
  return `d${mac.replace(/:/g, '-')}.${domain}`;
}

/** 1536 MiB → "1.5Gi": memory as `kubectl get -o wide` shows it. */
export function humanBytes(n: number): string {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const s = v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1);
  return `${s.replace(/\.0$/, '')}${units[i] ?? ''}`;
}

export type TokenCheck = 'none' | 'valid' | 'invalid';

export type RegisterPlan =
  | { action: 'create'; name: string; macs: string[] }
  | { action: 'update'; name: string; macs: string[] }
  | { action: 'refuse'; status: 401 | 403 | 409; message: string };

/**
 * Decides a registration. `owners` maps each MAC of the body (boot MAC and NIC MACs) to the Node
 * that has it, when one does; `token` says whether a token came and whether it is the owner's;
 * `fromOwnAddress` whether the request's source address is one of the owner's addresses.
 */
export function planRegistration(o: {
  reg: Registration;
  domain: string;
  owners: ReadonlyMap<string, Readonly<Node>>;
  token: TokenCheck;
  fromOwnAddress: boolean;
}): RegisterPlan {
  const macs = [
    ...new Set([o.reg.mac, ...(o.reg.hardware.nics ?? []).map((n) => n.mac.toLowerCase())]),
  ];
  const names = new Set([...o.owners.values()].map((n) => n.metadata.name ?? ''));
  if (names.size > 1) {
    const list = macs
      .filter((m) => o.owners.has(m))
      .map((m) => `${m} is ${o.owners.get(m)?.metadata.name ?? '?'}'s`);
    return {
      action: 'refuse',
      status: 409,
      message: `this machine's MACs belong to different Nodes (${list.join(', ')}): remove the MACs from the wrong Node first`,
    };
  }
  const owner = o.owners.get(o.reg.mac) ?? [...o.owners.values()][0];
  if (!owner) {
    if (o.token !== 'none')
      return {
        action: 'refuse',
        status: 401,
        message: `no Node has MAC ${o.reg.mac}, so no token can be valid for it: register without one`,
      };
    return { action: 'create', name: discoveredName(o.reg.mac, o.domain), macs };
  }
  const name = owner.metadata.name ?? '';
  if (!o.owners.has(o.reg.mac))
    return {
      action: 'refuse',
      status: 409,
      message: `a NIC MAC of this machine belongs to Node ${name} but its boot MAC ${o.reg.mac} does not: add it to ${name}'s spec.macs or remove the others`,
    };
  if (o.token === 'invalid')
    return {
      action: 'refuse',
      status: 401,
      message: `the token is not node ${name}'s registration token`,
    };
  if (o.token === 'none' && !o.fromOwnAddress)
    return {
      action: 'refuse',
      status: 403,
      message: `MAC ${o.reg.mac} belongs to Node ${name}: register with its registration token or from its own address`,
    };
  const have = owner.spec.macs ?? [];
  return { action: 'update', name, macs: [...new Set([...have, ...macs])] };
}
