/**
 * Power drivers: one interface over the ways Crowbar switches a machine on and off (the Node's
 * `spec.power`). The install flow calls {@link PowerDriver} through `powerDriverFor(node)`
 * (operator/power/controller.ts), which resolves the credentials Secret, records an Event on the
 * Node for every action and logs without the credentials.
 *
 * The interface is stable; the provisioning flow depends on it:
 * - `on()`, `off()`, `cycle()` ask for a power change and resolve once the BMC has accepted it
 *   (they do not wait for the OS). `cycle()` of a machine that is off powers it on.
 * - `status()` is what the BMC reports now.
 * - `setNextBoot('network' | 'disk')` picks the device of the next boot (one-shot where the BMC
 *   has the notion: IPMI boot flags, Redfish BootSourceOverrideEnabled=Once).
 * A driver that cannot do something (ssh has only a reboot) rejects with a {@link PowerError} of
 * kind `unsupported`; callers check {@link PowerDriver.capabilities} first.
 */
import type { Node } from '../../generated/crowbar.ts';

export type PowerState = 'on' | 'off' | 'unknown';
export type BootDevice = 'network' | 'disk';
export type PowerAction = 'on' | 'off' | 'cycle' | 'status' | 'setNextBoot';
export type PowerDriverName = NonNullable<Node['spec']['power']>['driver'];

export interface PowerDriver {
  /** The driver's name (`spec.power.driver`). */
  readonly name: PowerDriverName;
  /** What this driver can do; the others reject with kind `unsupported`. */
  readonly capabilities: ReadonlySet<PowerAction>;
  on(): Promise<void>;
  off(): Promise<void>;
  cycle(): Promise<void>;
  status(): Promise<PowerState>;
  setNextBoot(device: BootDevice): Promise<void>;
}

export type PowerErrorKind =
  | 'unsupported'
  | 'config'
  | 'credentials'
  | 'unreachable'
  | 'auth'
  | 'refused'
  | 'timeout'
  | 'protocol';

/** A failed power action; the message says what to fix and never holds a credential. */
export class PowerError extends Error {
  readonly kind: PowerErrorKind;
  constructor(kind: PowerErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PowerError';
    this.kind = kind;
  }
}

/** What a Secret named by `spec.power.credentialsSecret` resolves to. */
export interface PowerCredentials {
  username: string;
  password: string;
  /** PEM CA bundle for the BMC's TLS certificate (redfish). */
  ca?: string | undefined;
}

/** Secret keys read for {@link PowerCredentials}. */
export const CREDENTIAL_KEYS = {
  username: 'username',
  password: 'password',
  ca: 'ca.crt',
} as const;

/** Replaces every credential value in `text` (error output from a tool, say) with [redacted]. */
export function redact(text: string, creds: PowerCredentials | undefined): string {
  if (!creds) return text;
  let out = text;
  for (const v of [creds.password, creds.username]) {
    if (v.length >= 3) out = out.split(v).join('[redacted]');
  }
  return out;
}

/** Rejects a call the driver cannot make. */
export function unsupported(driver: string, action: PowerAction, why: string): Promise<never> {
  return Promise.reject(
    new PowerError('unsupported', `the ${driver} power driver cannot ${action}: ${why}`),
  );
}

/**
 * Validates a Node's `spec.power` (beyond what the CRD schema already refuses: objects from an
 * older schema, or built in code) and returns it, or a message saying what to fix.
 */
export function checkPowerSpec(
  node: Pick<Node, 'metadata' | 'spec'>,
): { ok: true; power: NonNullable<Node['spec']['power']> } | { ok: false; message: string } {
  const p = node.spec.power;
  const name = node.metadata.name ?? '(unnamed)';
  if (!p) return { ok: false, message: `node ${name} has no spec.power: set spec.power.driver` };
  if (p.driver !== 'ssh' && !p.address)
    return {
      ok: false,
      message: `node ${name}: spec.power.address is required for the ${p.driver} driver`,
    };
  if ((p.driver === 'ipmi' || p.driver === 'redfish') && !p.credentialsSecret)
    return {
      ok: false,
      message: `node ${name}: spec.power.credentialsSecret is required for the ${p.driver} driver`,
    };
  return { ok: true, power: p };
}
