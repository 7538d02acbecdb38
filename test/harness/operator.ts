/** Runs the real operator (node operator/main.ts) as a child process against the test cluster. */
import { get } from 'node:http';
import { join } from 'node:path';
import { NODE_FLAGS } from '../../operator/runtime/heap.ts';
import { freePort, startProcess, waitFor, type Started } from './process.ts';

export const ROOT = join(import.meta.dirname, '..', '..');

export interface OperatorProc extends Started {
  healthPort: number;
  log: string;
  /** GET on the health server: status code and body ('' and 0 when unreachable). */
  http(path: string): Promise<{ status: number; body: string }>;
}

export async function startOperator(opts: {
  kubeconfig: string;
  logDir: string;
  identity: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
}): Promise<OperatorProc> {
  const healthPort = await freePort();
  const log = join(opts.logDir, `operator-${opts.identity}.log`);
  const p = startProcess(
    process.execPath,
    [
      ...NODE_FLAGS,
      join(ROOT, 'operator', 'main.ts'),
      `--kubeconfig=${opts.kubeconfig}`,
      `--health-addr=127.0.0.1:${healthPort}`,
      `--identity=${opts.identity}`,
      '--lease-duration-ms=4000',
      '--renew-deadline-ms=3000',
      '--retry-period-ms=500',
      '--api-addr=127.0.0.1:0',
      ...(opts.args ?? []),
    ],
    log,
    { env: { ...process.env, LOG_LEVEL: 'debug', ...opts.env } },
  );
  const http = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve) => {
      get({ host: '127.0.0.1', port: healthPort, path, timeout: 2000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
        });
      }).on('error', () => {
        resolve({ status: 0, body: '' });
      });
    });
  await waitFor(
    `operator ${opts.identity} health server`,
    async () => (await http('/healthz')).status === 200,
    30_000,
  );
  return { ...p, healthPort, log, http };
}

/** Value of an unlabelled metric, or undefined when absent. */
export function metricValue(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}
