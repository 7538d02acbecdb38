/**
 * Helpers for the DNS sidecar's tests: a fresh loopback address for each test's servers, and `dig`
 * (the real one, from Debian's dnsutils) with its YAML output read into a plain object.
 */
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import { load } from 'js-yaml';

const run = promisify(execFile);

/** A loopback address no other test uses (127.53.x.y; all of 127/8 is loopback on Linux). */
export function loopback(): string {
  return `127.53.${randomInt(1, 255)}.${randomInt(1, 255)}`;
}

export interface DigResult {
  status: string;
  flags: string[];
  answer: string[];
  authority: string[];
  additional: string[];
  /** The rdata of each answer record (the last field of the line). */
  data: string[];
}

interface DigYaml {
  type: string;
  message?: {
    response_message_data?: {
      status: string;
      flags?: string | null;
      ANSWER_SECTION?: string[];
      AUTHORITY_SECTION?: string[];
      ADDITIONAL_SECTION?: string[];
    };
  };
}

/** Runs `dig @server -p port +yaml ...args` (one try, 2 s) and returns the first response. */
export async function dig(server: string, port: number, args: string[]): Promise<DigResult> {
  const { stdout } = await run(
    'dig',
    [`@${server}`, '-p', String(port), '+yaml', '+time=2', '+tries=1', ...args],
    { timeout: 10_000 },
  );
  const docs = load(stdout) as DigYaml[] | undefined;
  const msg = docs?.find((d) => d.type === 'MESSAGE')?.message?.response_message_data;
  if (!msg) throw new Error(`dig ${args.join(' ')}: no response\n${stdout}`);
  const answer = msg.ANSWER_SECTION ?? [];
  return {
    status: msg.status,
    flags: (msg.flags ?? '').split(' ').filter(Boolean),
    answer,
    authority: msg.AUTHORITY_SECTION ?? [],
    additional: msg.ADDITIONAL_SECTION ?? [],
    data: answer.map((l) => l.split(/\s+/).slice(4).join(' ')),
  };
}

/** Runs dig with plain text output (for zone transfers, whose YAML has one document per message). */
export async function digText(server: string, port: number, args: string[]): Promise<string> {
  const { stdout } = await run(
    'dig',
    [`@${server}`, '-p', String(port), '+time=5', '+tries=1', ...args],
    { timeout: 20_000 },
  );
  return stdout;
}

/** The serial of the SOA in an answer or authority line. */
export function soaSerial(r: DigResult): number {
  const line = [...r.answer, ...r.authority].find((l) => l.split(/\s+/)[3] === 'SOA');
  const serial = Number(line?.split(/\s+/)[6]);
  if (!Number.isInteger(serial)) throw new Error(`no SOA in ${JSON.stringify(r)}`);
  return serial;
}
