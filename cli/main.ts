/**
 * `kubectl crowbar`: the kubectl plugin (an executable `kubectl-crowbar` on PATH). Errors are one
 * line on stderr and exit code 1, as kubectl's; success is exit code 0.
 */
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline/promises';
import { CrowbarClient } from '../operator/kube/client.ts';
import { apiMessage } from '../operator/kube/errors.ts';
import * as cmd from './commands.ts';
import { CliError, kubeConfig } from './kube.ts';
import {
  checkAddressIn,
  checkFqdn,
  checkMac,
  checkNetworkName,
  checkRange,
  checkRangesDisjoint,
  checkSubnet,
  checkV6prefix,
  parseRange,
  type Range,
} from './validate.ts';

const USAGE = `kubectl crowbar: drive Crowbar's annealer from the command line

Commands:
  init [--wizard] --node FQDN [--mac MAC]... --subnet CIDR [--range name=first-last]...
       [--router IP] [--v6prefix auto|PREFIX/64] [--network admin]
                                      the admin network, the admin node and the system deployment
  bind ROLE NODE [--deployment D]     create the noderole ROLE.NODE (deployment system by default)
  propose|commit deployment|node|noderole NAME
  retry NODEROLE                      run a noderole in error again
  available NODE on|off               let the annealer run on a node, or freeze it
  status [DEPLOYMENT] [-w]            the deployment tree, per-state counts, noderoles in error
  why NODEROLE [--max-concurrent-runs N]   what a noderole waits for
  logs NODEROLE                       the last run's log (and its Job's pod logs)
  graph [--deployment D] [-o dot|svg|png] [--file F]   the noderole graph (Graphviz)

Global flags: --kubeconfig FILE, --context NAME (else KUBECONFIG, else ~/.kube/config)
`;

const OPTIONS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  deployment: { type: 'string', short: 'd' },
  watch: { type: 'boolean', short: 'w' },
  output: { type: 'string', short: 'o' },
  file: { type: 'string', short: 'f' },
  'max-concurrent-runs': { type: 'string' },
  wizard: { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  network: { type: 'string' },
  subnet: { type: 'string' },
  range: { type: 'string', multiple: true },
  router: { type: 'string' },
  v6prefix: { type: 'string' },
  node: { type: 'string' },
  mac: { type: 'string', multiple: true },
  domain: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<
  typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>
>['values'];

function need(args: string[], n: number, usage: string): void {
  if (args.length !== n) throw new CliError(`usage: kubectl crowbar ${usage}`);
}

function arg(args: string[], i: number): string {
  return args[i] ?? '';
}

function fail(msg: string | undefined): void {
  if (msg !== undefined) throw new CliError(msg);
}

/** Init answers from flags alone, each validated as the CRDs would. */
export function answersFromFlags(v: Values): cmd.InitAnswers {
  const network = v.network ?? 'admin';
  fail(checkNetworkName(network));
  if (v.node === undefined) throw new CliError('init needs --node FQDN (or --wizard)');
  fail(checkFqdn(v.node));
  if (v.subnet === undefined) throw new CliError('init needs --subnet CIDR (or --wizard)');
  fail(checkSubnet(v.subnet));
  const ranges: Range[] = [];
  for (const s of v.range ?? []) {
    const r = parseRange(s);
    if (typeof r === 'string') throw new CliError(r);
    fail(checkRange(r, v.subnet));
    ranges.push(r);
  }
  fail(checkRangesDisjoint(ranges));
  if (v.router !== undefined) fail(checkAddressIn(v.router, v.subnet));
  const v6prefix = v.v6prefix ?? 'auto';
  fail(checkV6prefix(v6prefix));
  const macs = v.mac ?? [];
  for (const m of macs) fail(checkMac(m));
  return { network, subnet: v.subnet, ranges, router: v.router, v6prefix, node: v.node, macs };
}

/** The interactive wizard: each answer asked until it validates, flags as defaults. */
async function wizard(v: Values): Promise<cmd.InitAnswers | undefined> {
  const rl = createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: process.stdin.isTTY,
  });
  const closed = new Promise<never>((_, reject) =>
    rl.once('close', () => {
      reject(new CliError('input ended before the wizard finished'));
    }),
  );
  closed.catch(() => undefined);
  const ask = async (
    q: string,
    def: string | undefined,
    check: (s: string) => string | undefined,
  ) => {
    for (;;) {
      const raw = await Promise.race([
        rl.question(`${q}${def !== undefined ? ` [${def}]` : ''}: `),
        closed,
      ]);
      const a = raw.trim() === '' ? (def ?? '') : raw.trim();
      const err = check(a);
      if (err === undefined) return a;
      process.stdout.write(`  ! ${err}\n`);
    }
  };
  const list = (s: string) =>
    s
      .split(/[\s,]+/)
      .map((x) => x.trim())
      .filter((x) => x !== '');
  try {
    const domain = await ask('DNS domain', v.domain ?? 'lab.example.com', (s) =>
      checkFqdn(`admin.${s}`) === undefined
        ? undefined
        : `${JSON.stringify(s)} is not a domain of at least two labels`,
    );
    const network = await ask('Admin network name', v.network ?? 'admin', checkNetworkName);
    const subnet = await ask(
      'Admin subnet (IPv4 CIDR)',
      v.subnet ?? '192.168.124.0/24',
      checkSubnet,
    );
    const base = subnet.split('.').slice(0, 3).join('.');
    const defRanges =
      v.range?.join(' ') ??
      (subnet.endsWith('/24')
        ? `admin=${base}.10-${base}.11 dhcp=${base}.21-${base}.80 host=${base}.81-${base}.160`
        : undefined);
    const rangesText = await ask('Ranges (name=first-last, space separated)', defRanges, (s) => {
      const rs: Range[] = [];
      for (const x of list(s)) {
        const r = parseRange(x);
        if (typeof r === 'string') return r;
        const e = checkRange(r, subnet);
        if (e !== undefined) return e;
        rs.push(r);
      }
      return checkRangesDisjoint(rs);
    });
    const ranges = list(rangesText).map((x) => parseRange(x) as Range);
    const routerText = await ask(
      'Router (IPv4 address in the subnet, - for none)',
      v.router ?? (subnet.endsWith('/24') ? `${base}.1` : '-'),
      (s) => (s === '-' ? undefined : checkAddressIn(s, subnet)),
    );
    const v6prefix = await ask('IPv6 prefix (/64 or auto)', v.v6prefix ?? 'auto', checkV6prefix);
    const node = await ask('Admin node FQDN', v.node ?? `admin.${domain}`, checkFqdn);
    const macs = list(
      await ask('Admin node MACs (space separated, - for none)', v.mac?.join(' ') ?? '-', (s) => {
        for (const m of list(s))
          if (m !== '-') {
            const e = checkMac(m);
            if (e !== undefined) return e;
          }
        return undefined;
      }),
    ).filter((m) => m !== '-');
    const answers: cmd.InitAnswers = {
      network,
      subnet,
      ranges,
      router: routerText === '-' ? undefined : routerText,
      v6prefix,
      node,
      macs,
    };
    process.stdout.write(`\nkubectl crowbar init will create:\n${cmd.initPlan(answers)}\n\n`);
    const ok = await ask('Create it? (yes/no)', 'yes', (s) =>
      ['yes', 'y', 'no', 'n'].includes(s.toLowerCase()) ? undefined : 'answer yes or no',
    );
    return ok.toLowerCase().startsWith('y') ? answers : undefined;
  } finally {
    rl.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new CliError(e instanceof Error ? e.message : String(e), { cause: e });
  }
  const v = parsed.values;
  const [command, ...args] = parsed.positionals;
  if (v.help === true || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && v.help !== true ? 1 : 0;
  }
  const io: cmd.Io = { out: (s) => process.stdout.write(s) };
  const known = [
    'init',
    'bind',
    'propose',
    'commit',
    'retry',
    'available',
    'status',
    'why',
    'logs',
    'graph',
  ];
  if (!known.includes(command))
    throw new CliError(
      `unknown command "${command}" for "kubectl crowbar" (see kubectl crowbar --help)`,
    );
  // Validate init's answers before touching the kubeconfig: a typo is reported first.
  let answers: cmd.InitAnswers | undefined;
  if (command === 'init' && v.wizard !== true) answers = answersFromFlags(v);
  const kc = kubeConfig({ kubeconfig: v.kubeconfig, context: v.context });
  const c = new CrowbarClient(kc);
  switch (command) {
    case 'init':
      if (v.wizard === true) {
        answers = await wizard(v);
        if (answers === undefined) {
          io.out('nothing created\n');
          return 0;
        }
      }
      if (answers !== undefined) await cmd.init(io, c, answers);
      return 0;
    case 'bind':
      need(args, 2, 'bind ROLE NODE [--deployment D]');
      await cmd.bind(io, c, arg(args, 0), arg(args, 1), v.deployment ?? 'system');
      return 0;
    case 'propose':
    case 'commit':
      need(args, 2, `${command} deployment|node|noderole NAME`);
      await cmd.proposeOrCommit(io, c, command, arg(args, 0), arg(args, 1));
      return 0;
    case 'retry':
      need(args, 1, 'retry NODEROLE');
      await cmd.retry(io, c, arg(args, 0));
      return 0;
    case 'available':
      need(args, 2, 'available NODE on|off');
      await cmd.available(io, c, arg(args, 0), arg(args, 1));
      return 0;
    case 'status':
      if (args.length > 1) throw new CliError('usage: kubectl crowbar status [DEPLOYMENT] [-w]');
      if (v.watch === true) await cmd.statusWatch(io, kc, c, args[0], process.stdout.isTTY);
      else await cmd.status(io, c, args[0]);
      return 0;
    case 'why': {
      need(args, 1, 'why NODEROLE');
      const max = Number(
        v['max-concurrent-runs'] ?? process.env['CROWBAR_MAX_CONCURRENT_RUNS'] ?? '10',
      );
      if (!Number.isInteger(max) || max < 1)
        throw new CliError('--max-concurrent-runs must be a positive integer');
      await cmd.why(io, c, arg(args, 0), max);
      return 0;
    }
    case 'logs':
      need(args, 1, 'logs NODEROLE');
      await cmd.logs(io, kc, c, arg(args, 0));
      return 0;
    case 'graph':
      need(args, 0, 'graph [--deployment D] [-o dot|svg|png] [--file F]');
      await cmd.graph(io, c, v.deployment, v.output ?? 'dot', v.file);
      return 0;
  }
  return 1;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      const msg = e instanceof CliError ? e.message : apiMessage(e);
      process.stderr.write(`error: ${msg.split('\n')[0] ?? ''}\n`);
      process.exitCode = 1;
    },
  );
}
