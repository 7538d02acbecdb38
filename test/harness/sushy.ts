/**
 * A real Redfish service for the redfish power driver: the sushy-tools emulator (OpenStack's, from
 * PyPI; tools/sushy-tools/ensure.sh builds its venv) on 127.0.0.1 over HTTPS with HTTP Basic
 * authentication (a bcrypt htpasswd file), in its fake-driver mode (`SUSHY_EMULATOR_FAKE_DRIVER`).
 * Its other backends need libvirt, Nova or Ironic, which this machine does not run; the fake
 * driver keeps each system's power state and boot device in a sqlite file and, with
 * `external_notifier`, PUTs the system to a URL on every change. This harness receives those
 * notifications and turns them into a real qemu VM starting and stopping (vm-power.sh), with a
 * network boot when the system's boot device is Pxe. The emulator applies a power change 1-11 s
 * after it is asked (as hardware does), when the system is next read.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHASSIS_SCRIPT, prepareVmState, vmBoots, vmRunning, type SimVm } from './ipmi-bmc.ts';
import { issueLeaf, makeCa } from './pki.ts';
import { freePort, startProcess, waitFor, type Started } from './process.ts';

export const SUSHY_ENSURE = join(
  import.meta.dirname,
  '..',
  '..',
  'tools',
  'sushy-tools',
  'ensure.sh',
);

/** The emulator's venv (built when missing). */
export function ensureSushy(): string {
  return execFileSync(SUSHY_ENSURE, { encoding: 'utf8', timeout: 300_000 }).trim();
}

export interface RedfishBmc {
  /** https://127.0.0.1:<port> */
  url: string;
  systemId: string;
  caPem: string;
  stateDir: string;
  vmRunning(): boolean;
  boots(): string[];
  /** Notifications received (power_state, boot_device), oldest first. */
  notes: { power: string; boot: string }[];
  stop(): Promise<void>;
}

function runScript(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(CHASSIS_SCRIPT, args, { timeout: 20_000 }, (err) => {
      if (err) reject(new Error(`vm-power.sh ${args.join(' ')} failed`, { cause: err }));
      else resolve();
    });
  });
}

export async function startRedfishBmc(o: {
  dir: string;
  username: string;
  password: string;
  systemId: string;
  mac: string;
  vm: SimVm;
}): Promise<RedfishBmc> {
  const venv = ensureSushy();
  const stateDir = join(o.dir, 'vm');
  prepareVmState(stateDir, o.vm);
  const ca = makeCa(join(o.dir, 'pki'), '/CN=pow-redfish-ca');
  const leaf = issueLeaf(join(o.dir, 'pki'), 'bmc', '/CN=127.0.0.1', true);
  const htpasswd = join(o.dir, 'htpasswd');
  const hash = execFileSync(
    join(venv, 'bin', 'python'),
    [
      '-c',
      'import bcrypt,sys; print(bcrypt.hashpw(sys.stdin.buffer.read(), bcrypt.gensalt(4)).decode())',
    ],
    { input: o.password, encoding: 'utf8' },
  ).trim();
  writeFileSync(htpasswd, `${o.username}:${hash}\n`);

  // The notification receiver: one request at a time, in order.
  const notes: { power: string; boot: string }[] = [];
  let lastBoot = '';
  let chain = Promise.resolve();
  const receiver: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 1 << 20) chunks.push(c);
    });
    req.on('end', () => {
      chain = chain.then(async () => {
        try {
          const sys = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
            power_state?: string;
            boot_device?: string;
          };
          const power = sys.power_state ?? '';
          const boot = sys.boot_device ?? 'Hdd';
          notes.push({ power, boot });
          if (boot !== lastBoot) {
            await runScript([stateDir, 'set', 'boot', boot === 'Pxe' ? 'pxe' : 'default']);
            lastBoot = boot;
          }
          if (power === 'On') await runScript([stateDir, 'set', 'power', '1']);
          if (power === 'Off') await runScript([stateDir, 'set', 'power', '0']);
          res.writeHead(204).end();
        } catch (e) {
          res.writeHead(500).end(String(e));
        }
      });
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const notifyPort = (receiver.address() as AddressInfo).port;

  let emu: Started | undefined;
  let url = '';
  for (let attempt = 0; attempt < 5 && !emu; attempt++) {
    const port = await freePort();
    const conf = join(o.dir, `sushy-${attempt}.conf`);
    writeFileSync(
      conf,
      [
        `SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'`,
        `SUSHY_EMULATOR_LISTEN_PORT = ${port}`,
        `SUSHY_EMULATOR_SSL_CERT = '${leaf.crt}'`,
        `SUSHY_EMULATOR_SSL_KEY = '${leaf.key}'`,
        `SUSHY_EMULATOR_AUTH_FILE = '${htpasswd}'`,
        `SUSHY_EMULATOR_STATE_DIR = '${join(o.dir, 'sushy-state')}'`,
        `SUSHY_EMULATOR_FAKE_DRIVER = True`,
        `SUSHY_EMULATOR_FAKE_SYSTEMS = [{'uuid': '${o.systemId}', 'name': 'pow-${o.systemId.slice(0, 8)}', 'power_state': 'Off', 'external_notifier': True, 'nics': [{'mac': '${o.mac}', 'ip': '192.0.2.10'}]}]`,
        `EXTERNAL_NOTIFICATION_URL = 'http://127.0.0.1:${notifyPort}/notify'`,
        '',
      ].join('\n'),
    );
    const p = startProcess(
      join(venv, 'bin', 'sushy-emulator'),
      ['--config', conf],
      join(o.dir, `sushy-${attempt}.log`),
    );
    const u = `https://127.0.0.1:${port}`;
    try {
      await waitFor(
        'sushy-emulator to listen',
        () =>
          new Promise<boolean>((resolve) => {
            if (p.proc.exitCode !== null) {
              resolve(false);
              return;
            }
            execFile(
              'curl',
              ['-s', '-o', '/dev/null', '--cacert', ca.crt, `${u}/redfish/v1/`],
              (err) => {
                resolve(err === null);
              },
            );
          }),
        20_000,
        200,
      );
      emu = p;
      url = u;
    } catch {
      await p.stop(2000);
    }
  }
  if (!emu) throw new Error(`sushy-emulator did not start: see ${o.dir}/sushy-*.log`);
  const started = emu;
  return {
    url,
    systemId: o.systemId,
    caPem: readFileSync(ca.crt, 'utf8'),
    stateDir,
    vmRunning: () => vmRunning(stateDir),
    boots: () => vmBoots(stateDir),
    notes,
    stop: async () => {
      await started.stop(5000);
      await new Promise<void>((r) => {
        receiver.close(() => {
          r();
        });
      });
      await chain;
      await runScript([stateDir, 'set', 'power', '0']);
    },
  };
}
