/**
 * Differential test (issue 11): the sidecar and NSD (Debian's nsd, the reference authoritative
 * server) serve the same zones, the sidecar's own zone files, and a generated corpus of queries
 * (existing and missing names, empty non-terminals, wrong types, reverse v4 and v6 and RFC 2317
 * names, names outside the zones, CNAME aliases (chased in-zone, chains, dangling targets), mixed
 * case, EDNS sizes and DO, UDP and pipelined TCP) must be
 * answered identically: rcode, the flags that matter (QR, AA, TC, RD, RA, CD), the question, and
 * every section's records (the OPT record's presence, version and DO bit).
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket, { type OptAnswer, type Packet } from 'dns-packet';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeMessage, type Message } from '../../dns-sidecar/codec.ts';
import { startDnsSidecar, type DnsSidecarProc } from '../../dns-sidecar/lab.ts';
import { reverseV4, reverseV6 } from '../../dns-sidecar/names.ts';
import { eventually, uid } from '../harness/context.ts';
import { dig, loopback } from '../harness/dns.ts';
import { startNsd, tcpPipeline, udpExchange, type RunningServer } from '../harness/dns-servers.ts';

const logDir = inject('cpDir');
const id = uid();
const domain = `d${id}.crowbar.test`;
const tmp = mkdtempSync(join(tmpdir(), 'cbdns-diff-'));
const ours = loopback();
const ref = loopback();
const PORT = 5353;
let sidecar: DnsSidecarProc | undefined;
let nsd: RunningServer | undefined;

/** mulberry32: a small seeded PRNG, so a failing corpus can be regenerated from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const SEED = 20261130;
const rnd = prng(SEED);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

const NODES = 60;
const nodeName = (i: number) => `n${i}.rack${i % 4}.${domain}`;
const adminV4 = (i: number) => `192.168.124.${10 + i}`;
const adminV6 = (i: number) => `fd00:1:2:3::${(0x100 + i).toString(16)}`;
const bmcV4 = (i: number) => `10.9.8.${65 + i}`;
const storageV4 = (i: number) => `172.16.${i % 4}.${20 + i}`;
/** Nodes with aliases: every fifth node has two (one below an empty non-terminal). */
const aliasesOf = (i: number) =>
  i % 5 === 0 ? [`www${i}.${domain}`, `svc${i}.apps.${domain}`] : [];
/**
 * A chain (link -> chain -> n1) and a dangling alias (spook -> ghost, a node without addresses):
 * `chain` is n1's alias and a node with an alias of its own.
 */
const ALIAS_NODES: [node: string, aliases: string[]][] = [
  [nodeName(1), [`chain.${domain}`]],
  [`chain.${domain}`, [`link.${domain}`]],
  [`ghost.${domain}`, [`spook.${domain}`]],
];

function manifests(): string {
  const docs: string[] = [
    `kind: Network\nmetadata: {name: admin}\nspec: {category: admin, subnet: 192.168.124.0/24, v6prefix: 'fd00:1:2:3::/64'}`,
    `kind: Network\nmetadata: {name: bmc}\nspec: {category: bmc, subnet: 10.9.8.64/26}`,
    `kind: Network\nmetadata: {name: storage}\nspec: {category: general, subnet: 172.16.0.0/22}`,
  ];
  const alloc = (net: string, node: string, address: string, family: string) =>
    `kind: NetworkAllocation\nmetadata: {name: x}\nspec: {network: ${net}, node: ${node}, address: '${address}', family: ${family}, range: host}`;
  for (let i = 0; i < NODES; i++) {
    docs.push(alloc('admin', nodeName(i), `${adminV4(i)}/24`, 'ipv4'));
    docs.push(alloc('admin', nodeName(i), `${adminV6(i)}/64`, 'ipv6'));
    if (i % 2 === 0) docs.push(alloc('bmc', nodeName(i), `${bmcV4(i)}/26`, 'ipv4'));
    if (i % 3 === 0) docs.push(alloc('storage', nodeName(i), `${storageV4(i)}/22`, 'ipv4'));
    if (aliasesOf(i).length > 0) {
      docs.push(
        `kind: Node\nmetadata: {name: ${nodeName(i)}}\nspec: {aliases: [${aliasesOf(i).join(', ')}]}`,
      );
    }
  }
  for (const [node, aliases] of ALIAS_NODES) {
    docs.push(`kind: Node\nmetadata: {name: ${node}}\nspec: {aliases: [${aliases.join(', ')}]}`);
  }
  return `${docs.join('\n---\n')}\n`;
}

/** Random 0x20 mixed case (RFC draft-vixie-dnsext-dns0x20), as resolvers send. */
function mixCase(name: string): string {
  return Array.from(name, (c) => c)
    .map((c) => (rnd() < 0.5 ? c.toUpperCase() : c))
    .join('');
}

interface Query {
  what: string;
  packet: Packet;
  tcp: boolean;
}

function corpus(n: number): Query[] {
  const existing: string[] = [domain, `ns1.${domain}`];
  const reverse: string[] = [];
  for (let i = 0; i < NODES; i++) {
    existing.push(nodeName(i));
    reverse.push(reverseV4(adminV4(i)), reverseV6(adminV6(i)));
    if (i % 2 === 0) {
      existing.push(`n${i}.bmc.rack${i % 4}.${domain}`);
      reverse.push(`${65 + i}.64-26.8.9.10.in-addr.arpa`);
    }
    if (i % 3 === 0) {
      existing.push(`n${i}.storage.rack${i % 4}.${domain}`);
      reverse.push(reverseV4(storageV4(i)));
    }
  }
  const aliases = [
    ...Array.from({ length: NODES }, (_, i) => aliasesOf(i)).flat(),
    ...ALIAS_NODES.flatMap(([, a]) => a),
  ];
  const ents = [
    `apps.${domain}`,
    `rack1.${domain}`,
    `bmc.rack0.${domain}`,
    '0.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa',
    '0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa',
  ];
  const apexes = [
    domain,
    '124.168.192.in-addr.arpa',
    '64-26.8.9.10.in-addr.arpa',
    '2.16.172.in-addr.arpa',
    '3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa',
  ];
  const missing = () =>
    pick([
      `nope${Math.floor(rnd() * 1000)}.${domain}`,
      `x.${pick(existing)}`,
      `${Math.floor(rnd() * 255)}.${pick(apexes.slice(1, 4))}`,
      reverseV6(`fd00:1:2:3::${Math.floor(rnd() * 0xffff).toString(16)}`),
      `a.b.c.rack2.${domain}`,
    ]);
  const outside = () =>
    pick([
      'example.com',
      'crowbar.test',
      'com',
      '.',
      '125.168.192.in-addr.arpa',
      'ip6.arpa',
      `${domain}.evil.org`,
    ]);
  const types = ['A', 'AAAA', 'PTR', 'SOA', 'NS', 'MX', 'TXT', 'CNAME', 'SRV', 'CAA'];
  const out: Query[] = [];
  for (let k = 0; k < n; k++) {
    const r = rnd();
    let name: string;
    let type: string;
    let what: string;
    if (r < 0.3) {
      name = pick(existing);
      type = pick(['A', 'AAAA', 'A', 'AAAA', 'MX', 'TXT', 'SOA', 'NS']);
      what = 'existing';
    } else if (r < 0.48) {
      name = pick(reverse);
      type = pick(['PTR', 'PTR', 'PTR', 'A', 'NS']);
      what = 'reverse';
    } else if (r < 0.62) {
      name = missing();
      type = pick(types);
      what = 'missing';
    } else if (r < 0.72) {
      name = pick(ents);
      type = pick(types);
      what = 'ent';
    } else if (r < 0.82) {
      name = pick(aliases);
      type = pick(['A', 'AAAA', 'A', 'AAAA', 'CNAME', 'MX', 'TXT', 'NS', 'ANY']);
      what = 'alias';
    } else if (r < 0.9) {
      name = pick(apexes);
      type = pick(['SOA', 'NS', 'A', 'MX', 'PTR']);
      what = 'apex';
    } else {
      name = outside();
      type = pick(types);
      what = 'outside';
    }
    if (rnd() < 0.5) name = mixCase(name);
    const e = rnd();
    const additionals: Packet['additionals'] =
      e < 0.4
        ? []
        : [
            {
              name: '.',
              type: 'OPT',
              udpPayloadSize: pick([512, 1232, 4096, 1400]),
              extendedRcode: 0,
              ednsVersion: 0,
              flags: rnd() < 0.3 ? 0x8000 : 0,
              flag_do: false,
              options: [],
            },
          ];
    const flags = (rnd() < 0.5 ? 0x0100 : 0) | (rnd() < 0.2 ? 0x0010 : 0);
    out.push({
      what: `${what} ${name} ${type}`,
      tcp: rnd() < 0.25,
      packet: {
        type: 'query',
        id: (k * 7919) & 0xffff,
        flags,
        questions: [{ name, type: type as 'A' }],
        additionals,
      },
    });
  }
  return out;
}

const lc = (s: string) => s.toLowerCase();

function rdata(a: NonNullable<Message['answers']>[number]): string {
  switch (a.type) {
    case 'SOA': {
      const d = a.data;
      return lc(
        `${d.mname} ${d.rname} ${d.serial} ${d.refresh} ${d.retry} ${d.expire} ${d.minimum}`,
      );
    }
    case 'OPT':
      return '';
    default:
      return lc(typeof a.data === 'string' ? a.data : JSON.stringify(a.data));
  }
}

/** What must be equal: header bits that matter, question, records of every section. */
function normalize(m: Message): unknown {
  // The question's name must come back as spelled (0x20); other owners (a CNAME's target) are
  // compared without case: NSD spells them through compression pointers into the question, which
  // RFC 4343 leaves free.
  const qname = lc(m.questions?.[0]?.name ?? '');
  const section = (xs: Message['answers'], exactOwner: boolean) =>
    (xs ?? [])
      .filter((a) => a.type !== 'OPT')
      .map(
        (a) =>
          `${exactOwner && lc(a.name) === qname ? a.name : lc(a.name)} ${'ttl' in a ? a.ttl : ''} ${a.type} ${rdata(a)}`,
      )
      .sort();
  const opt = (m.additionals ?? []).find((a): a is OptAnswer => a.type === 'OPT');
  return {
    rcode: m.rcode,
    qr: m.flag_qr,
    aa: m.flag_aa,
    tc: m.flag_tc,
    rd: m.flag_rd,
    ra: m.flag_ra,
    cd: m.flag_cd,
    question: (m.questions ?? []).map((q) => `${q.name} ${q.type} ${q.class}`),
    answer: section(m.answers, true),
    authority: section(m.authorities, false),
    additional: section(m.additionals, false),
    opt: opt ? { version: opt.ednsVersion, do: opt.flag_do, ext: opt.extendedRcode } : null,
  };
}

beforeAll(async () => {
  const src = join(tmp, 'zones.yaml');
  writeFileSync(src, manifests());
  const zoneDir = join(tmp, 'zones');
  sidecar = await startDnsSidecar({
    domains: [domain],
    host: ours,
    port: PORT,
    source: `file:${src}`,
    zoneDir,
    nameservers: [`ns1.${domain}=192.168.124.2,fd00:1:2:3::2`],
    logFile: join(logDir, `dns-diff-sidecar-${id}.log`),
  });
  const files = new Map(
    readdirSync(zoneDir)
      .filter((f) => f.endsWith('.zone'))
      .map((f) => [f.slice(0, -'.zone'.length), join(zoneDir, f)] as const),
  );
  expect(files.size).toBe(8);
  nsd = startNsd(join(tmp, 'nsd'), ref, PORT, files);
  await eventually(
    'NSD answers',
    async () => (await dig(ref, PORT, [domain, 'SOA', '+norec'])).status === 'NOERROR',
    30_000,
    200,
  );
});

afterAll(async () => {
  await sidecar?.stop();
  await nsd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('differential test against NSD', () => {
  it(`answers a corpus of 2,400 queries as NSD does (seed ${SEED})`, async () => {
    const queries = corpus(2400);
    const udp = queries.filter((q) => !q.tcp);
    const tcp = queries.filter((q) => q.tcp);
    const mismatches: string[] = [];
    const compare = (q: Query, a: Buffer | undefined, b: Buffer | undefined, how: string) => {
      if (!a || !b) {
        mismatches.push(
          `${q.what} (${how}): ${a ? '' : 'ours no reply '}${b ? '' : 'nsd no reply'}`,
        );
        return;
      }
      const na = normalize(decodeMessage(a));
      const nb = normalize(decodeMessage(b));
      if (JSON.stringify(na) !== JSON.stringify(nb)) {
        mismatches.push(
          `${q.what} (${how}):\n  ours ${JSON.stringify(na)}\n  nsd  ${JSON.stringify(nb)}`,
        );
      }
    };
    for (const q of udp) {
      const msg = dnsPacket.encode(q.packet);
      const [a, b] = await Promise.all([udpExchange(ours, PORT, msg), udpExchange(ref, PORT, msg)]);
      compare(q, a, b, 'udp');
    }
    const msgs = tcp.map((q) => dnsPacket.encode(q.packet));
    const [ta, tb] = await Promise.all([
      tcpPipeline(ours, PORT, msgs),
      tcpPipeline(ref, PORT, msgs),
    ]);
    const byId = (xs: Buffer[]) => new Map(xs.map((x) => [x.readUInt16BE(0), x]));
    const ma = byId(ta);
    const mb = byId(tb);
    for (const [i, q] of tcp.entries()) {
      const id = msgs[i]!.readUInt16BE(0);
      compare(q, ma.get(id), mb.get(id), 'tcp');
    }
    expect(ta).toHaveLength(tcp.length);
    expect(mismatches.slice(0, 15).join('\n')).toBe('');
  });
});

describe('protocol corner cases against NSD', () => {
  const header = (id: number, flags: number, qd: number, ar = 0) => {
    const b = Buffer.alloc(12);
    b.writeUInt16BE(id, 0);
    b.writeUInt16BE(flags, 2);
    b.writeUInt16BE(qd, 4);
    b.writeUInt16BE(ar, 10);
    return b;
  };
  const question = (name: string, type: number, klass: number) => {
    const parts = name.split('.').filter(Boolean);
    const b = Buffer.alloc(parts.reduce((n, p) => n + p.length + 1, 0) + 5);
    let o = 0;
    for (const p of parts) {
      b[o++] = p.length;
      o += b.write(p, o, 'ascii');
    }
    b[o++] = 0;
    b.writeUInt16BE(type, o);
    b.writeUInt16BE(klass, o + 2);
    return b;
  };
  const opt = (version: number) => {
    const b = Buffer.alloc(11);
    b.writeUInt16BE(41, 1);
    b.writeUInt16BE(1232, 3);
    b[6] = version;
    return b;
  };
  const cases: [string, Buffer][] = [
    ['no question', header(1, 0x0100, 0)],
    [
      'two questions',
      Buffer.concat([header(2, 0, 2), question(domain, 1, 1), question(domain, 1, 1)]),
    ],
    [
      'EDNS version 1',
      Buffer.concat([header(3, 0, 1, 1), question(`n1.rack1.${domain}`, 1, 1), opt(1)]),
    ],
    [
      'two OPT records',
      Buffer.concat([header(4, 0, 1, 2), question(domain, 6, 1), opt(0), opt(0)]),
    ],
    ['opcode IQUERY', Buffer.concat([header(5, 1 << 11, 1), question(domain, 6, 1)])],
    ['opcode STATUS', Buffer.concat([header(6, 2 << 11, 1), question(domain, 6, 1)])],
    ['opcode UPDATE', Buffer.concat([header(7, 5 << 11, 1), question(domain, 6, 1)])],
    ['class CH', Buffer.concat([header(8, 0, 1), question(`n1.rack1.${domain}`, 1, 3)])],
    ['class HS', Buffer.concat([header(9, 0, 1), question(domain, 6, 4)])],
    ['AXFR over UDP', Buffer.concat([header(10, 0, 1), question(domain, 252, 1)])],
    ['class ANY', Buffer.concat([header(17, 0, 1), question(`n1.rack1.${domain}`, 1, 255)])],
    ['class NONE', Buffer.concat([header(18, 0, 1), question(`n1.rack1.${domain}`, 1, 254)])],
    ['type ANY', Buffer.concat([header(19, 0, 1), question(`n1.rack1.${domain}`, 255, 1)])],
    [
      'AXFR of a name that is no apex',
      Buffer.concat([header(20, 0, 1), question(`n1.rack1.${domain}`, 252, 1)]),
    ],
    ['type 0', Buffer.concat([header(11, 0, 1), question(`n1.rack1.${domain}`, 0, 1)])],
    [
      'unknown type 65280',
      Buffer.concat([header(12, 0, 1), question(`n1.rack1.${domain}`, 65280, 1)]),
    ],
    ['MAILA', Buffer.concat([header(13, 0, 1), question(domain, 254, 1)])],
    ['OPT as qtype', Buffer.concat([header(14, 0, 1), question(domain, 41, 1)])],
    [
      'TC set in query',
      Buffer.concat([header(15, 0x0200, 1), question(`n1.rack1.${domain}`, 1, 1)]),
    ],
    [
      'AD set in query',
      Buffer.concat([header(16, 0x0020, 1), question(`n1.rack1.${domain}`, 1, 1)]),
    ],
  ];

  it.each(cases)('%s', async (_what, msg) => {
    const [a, b] = await Promise.all([udpExchange(ours, PORT, msg), udpExchange(ref, PORT, msg)]);
    const view = (x: Buffer | undefined) => (x ? normalize(decodeMessage(x)) : 'no reply');
    expect(view(a)).toEqual(view(b));
  });
});
