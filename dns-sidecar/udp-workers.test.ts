/**
 * The sidecar with UDP worker threads on a real loopback socket: clients on many source ports (so
 * the kernel's SO_REUSEPORT hash sends them to every socket) all get answers, a zone change
 * reaches every thread, and /metrics counts every thread's queries.
 */
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileBackend } from './backend/file.ts';
import { decodeMessage, type Message } from './codec.ts';
import { CONFIG } from './fixtures.test-helper.ts';
import { DnsMetrics } from './metrics.ts';
import { DnsSidecar } from './sidecar.ts';

const dir = mkdtempSync(join(tmpdir(), 'cbdns-workers-'));
const file = join(dir, 'zones.yaml');
const manifests = (address: string) =>
  `kind: Network\nmetadata: {name: admin}\nspec: {category: admin, subnet: 192.168.124.0/24}\n---\n` +
  `kind: NetworkAllocation\nmetadata: {name: a}\nspec: {network: admin, node: node1.lab.crowbar.dev, address: '${address}/24', family: ipv4, range: host}\n`;
/** Replaces the file by rename, as the file backend expects writers to. */
const write = (address: string): void => {
  writeFileSync(`${file}.tmp`, manifests(address));
  renameSync(`${file}.tmp`, file);
};
write('192.168.124.81');

const log = pino({ level: 'silent' });
const metrics = new DnsMetrics(false);
const sidecar = new DnsSidecar({
  config: CONFIG,
  backend: new FileBackend(file, log),
  listen: [{ host: '127.0.0.1', port: 0 }],
  notify: [],
  transferAllowed: () => false,
  log,
  metrics,
  udpWorkers: 2,
});
/** 24 clients: each its own socket, so its own source port. */
const clients: Socket[] = [];
let nextId = 1;

beforeAll(async () => {
  await sidecar.start();
  const deadline = Date.now() + 20_000;
  while (!sidecar.ready()) {
    if (Date.now() > deadline)
      throw new Error('the sidecar and its workers were not ready in 20 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  for (let i = 0; i < 24; i++) {
    const c = createSocket('udp4');
    await new Promise<void>((r) => c.bind(0, '127.0.0.1', r));
    clients.push(c);
  }
});

afterAll(async () => {
  for (const c of clients) c.close();
  await sidecar.stop();
  rmSync(dir, { recursive: true, force: true });
});

function ask(c: Socket, name: string): Promise<Message> {
  const id = nextId++ & 0xffff;
  const port = sidecar.server.bound[0]?.port ?? 0;
  const buf = dnsPacket.encode({ type: 'query', id, questions: [{ name, type: 'A' }] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.off('message', on);
      reject(new Error(`no answer to ${name} in 2 s`));
    }, 2000);
    const on = (m: Buffer): void => {
      if (m.readUInt16BE(0) !== id) return;
      clearTimeout(timer);
      c.off('message', on);
      resolve(decodeMessage(m));
    };
    c.on('message', on);
    c.send(buf, port, '127.0.0.1');
  });
}

const addresses = async (): Promise<string[]> =>
  (await Promise.all(clients.map((c) => ask(c, 'node1.lab.crowbar.dev')))).map((m) =>
    JSON.stringify(m.answers?.map((a) => ('data' in a ? a.data : null))),
  );

describe('UDP worker threads', () => {
  it('answer every client, see every zone change, and are counted in /metrics', async () => {
    expect(new Set(await addresses())).toEqual(new Set(['["192.168.124.81"]']));
    write('192.168.124.99');
    // Every client (whichever thread's socket its port hashes to) gets the new address, bounded.
    const deadline = Date.now() + 10_000;
    let seen: string[] = [];
    while (Date.now() < deadline) {
      seen = await addresses();
      if (seen.every((a) => a === '["192.168.124.99"]')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(new Set(seen)).toEqual(new Set(['["192.168.124.99"]']));
    const count = (text: string): number =>
      Number(
        /crowbar_dns_queries_total\{transport="udp",qtype="A",rcode="NOERROR"\} (\d+)/.exec(
          text,
        )?.[1] ?? '0',
      );
    // Every query answered so far, on whichever thread, is in the sum; the main thread's own
    // registry has only its share (24 clients over 3 sockets: all on one is a 3^-23 chance).
    const total = count(await sidecar.metricsText());
    expect(total).toBe(nextId - 1);
    const mainOnly = count(await metrics.registry.metrics());
    expect(mainOnly).toBeLessThan(total);
  });
});
