/**
 * The redfish power driver: DMTF Redfish (DSP0266) over HTTPS with HTTP Basic authentication
 * (DSP0266 §13.3.3). Power goes through the ComputerSystem's `#ComputerSystem.Reset` action;
 * the next boot device is `Boot.BootSourceOverrideTarget` (Pxe or Hdd) with
 * `BootSourceOverrideEnabled: Once` (DSP2046 ComputerSystem schema).
 * TLS is verified against the credentials Secret's `ca.crt` (or the system's CAs); only
 * `spec.power.insecure: true` turns verification off.
 */
import { Agent, fetch, type Dispatcher } from 'undici';
import {
  PowerError,
  redact,
  type BootDevice,
  type PowerAction,
  type PowerCredentials,
  type PowerDriver,
  type PowerState,
} from './driver.ts';

export interface RedfishTarget {
  /** https://host[:port] or the ComputerSystem's URL (https://host/redfish/v1/Systems/<id>). */
  address: string;
  credentials: PowerCredentials;
  insecure?: boolean;
  timeoutMs?: number;
}

/** The BMC's base URL and the ComputerSystem path given in the address, if any. */
export function parseRedfishAddress(address: string): { base: string; system?: string } {
  let u: URL;
  try {
    u = new URL(address);
  } catch (e) {
    throw new PowerError('config', `redfish address ${JSON.stringify(address)} is not a URL`, {
      cause: e,
    });
  }
  if (u.protocol !== 'https:')
    throw new PowerError('config', `redfish address ${address} must use https://`);
  if (u.username || u.password)
    throw new PowerError(
      'config',
      'the redfish address must not carry a user name or password: put them in the credentials Secret',
    );
  const path = u.pathname.replace(/\/+$/, '');
  const base = `${u.protocol}//${u.host}`;
  if (path === '' || path === '/redfish/v1') return { base };
  if (!/^\/redfish\/v1\/Systems\/[^/]+$/.test(path))
    throw new PowerError(
      'config',
      `redfish address path ${path} is not a ComputerSystem (/redfish/v1/Systems/<id>)`,
    );
  return { base, system: path };
}

/** Redfish PowerState → ours (PoweringOn counts as on, PoweringOff as off). */
export function powerFromRedfish(s: unknown): PowerState {
  if (s === 'On' || s === 'PoweringOn') return 'on';
  if (s === 'Off' || s === 'PoweringOff') return 'off';
  return 'unknown';
}

const TARGET: Record<BootDevice, string> = { network: 'Pxe', disk: 'Hdd' };

/** The body of the Boot override PATCH. */
export function bootOverrideBody(device: BootDevice): { Boot: Record<string, string> } {
  return { Boot: { BootSourceOverrideTarget: TARGET[device], BootSourceOverrideEnabled: 'Once' } };
}

/** The reset type to ask for, preferring what the system lists as allowed. */
export function pickResetType(
  action: 'on' | 'off' | 'cycle',
  allowed: readonly string[] | undefined,
): string {
  const prefs = {
    on: ['On', 'ForceOn'],
    off: ['ForceOff', 'GracefulShutdown'],
    cycle: ['ForceRestart', 'PowerCycle', 'GracefulRestart'],
  }[action];
  if (!allowed || allowed.length === 0) return prefs[0] as string;
  return prefs.find((p) => allowed.includes(p)) ?? (prefs[0] as string);
}

export function redfishDriver(t: RedfishTarget): PowerDriver {
  const { base, system: given } = parseRedfishAddress(t.address);
  const timeoutMs = t.timeoutMs ?? 30_000;
  const dispatcher: Dispatcher = new Agent({
    connect: {
      rejectUnauthorized: t.insecure !== true,
      ...(t.credentials.ca ? { ca: t.credentials.ca } : {}),
    },
  });
  const auth = `Basic ${Buffer.from(`${t.credentials.username}:${t.credentials.password}`).toString('base64')}`;
  let systemPath = given;

  const request = async (
    action: PowerAction,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<unknown> => {
    let res;
    try {
      res = await fetch(`${base}${path}`, {
        method,
        dispatcher,
        headers: {
          authorization: auth,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const detail = cause?.code ?? cause?.message ?? (e as Error).message;
      const tls = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME/i.test(detail);
      const timeout = (e as Error).name === 'TimeoutError';
      throw new PowerError(
        timeout ? 'timeout' : 'unreachable',
        `redfish ${action} on ${base}: ${
          timeout
            ? `no answer within ${timeoutMs} ms`
            : tls
              ? `the BMC's TLS certificate is not trusted (${detail}): put its CA in the Secret's ca.crt`
              : `cannot connect (${detail})`
        }`,
        { cause: e },
      );
    }
    const text = await res.text();
    if (res.status === 401 || res.status === 403)
      throw new PowerError(
        'auth',
        `redfish ${action} on ${base}: the BMC refused the credentials in the Secret (HTTP ${res.status})`,
      );
    if (!res.ok) {
      let msg = text.slice(0, 300);
      try {
        const j = JSON.parse(text) as { error?: { message?: string } };
        msg = j.error?.message ?? msg;
      } catch {
        // not JSON: keep the text
      }
      throw new PowerError(
        'refused',
        `redfish ${action} ${method} ${path} on ${base}: HTTP ${res.status}: ${redact(msg, t.credentials)}`,
      );
    }
    if (text === '') return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new PowerError('protocol', `redfish ${action} on ${base}: the reply is not JSON`, {
        cause: e,
      });
    }
  };

  const system = async (action: PowerAction): Promise<string> => {
    if (systemPath) return systemPath;
    const col = (await request(action, 'GET', '/redfish/v1/Systems')) as {
      Members?: { '@odata.id'?: string }[];
    };
    const ids = (col.Members ?? []).flatMap((m) => m['@odata.id'] ?? []);
    const only = ids[0];
    if (ids.length !== 1 || only === undefined)
      throw new PowerError(
        'config',
        `redfish BMC ${base} has ${ids.length} ComputerSystems (${ids.join(', ')}): name one in spec.power.address`,
      );
    systemPath = only;
    return only;
  };

  const read = async (action: PowerAction) => {
    const path = await system(action);
    return {
      path,
      sys: (await request(action, 'GET', path)) as {
        PowerState?: unknown;
        Actions?: Record<
          string,
          { target?: string; 'ResetType@Redfish.AllowableValues'?: string[] }
        >;
      },
    };
  };

  const reset = async (action: 'on' | 'off' | 'cycle', type?: string): Promise<void> => {
    const { path, sys } = await read(action);
    const a = sys.Actions?.['#ComputerSystem.Reset'];
    const target = a?.target ?? `${path}/Actions/ComputerSystem.Reset`;
    let rt = type ?? pickResetType(action, a?.['ResetType@Redfish.AllowableValues']);
    if (action === 'cycle' && powerFromRedfish(sys.PowerState) === 'off')
      rt = pickResetType('on', a?.['ResetType@Redfish.AllowableValues']);
    await request(action, 'POST', target, { ResetType: rt });
  };

  return {
    name: 'redfish',
    capabilities: new Set<PowerAction>(['on', 'off', 'cycle', 'status', 'setNextBoot']),
    on: () => reset('on'),
    off: () => reset('off'),
    cycle: () => reset('cycle'),
    status: async () => powerFromRedfish((await read('status')).sys.PowerState),
    setNextBoot: async (device) => {
      const path = await system('setNextBoot');
      await request('setNextBoot', 'PATCH', path, bootOverrideBody(device));
    },
  };
}
