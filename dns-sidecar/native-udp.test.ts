/**
 * The native UDP loop's C code under AddressSanitizer and UBSan: the addon is built again with
 * the sanitizers into a temp dir and driven in a child node (with the sanitizer runtimes
 * preloaded) by native/stress.test-helper.ts: 50,000 random datagrams of every size from four
 * clients, a 64 KiB table that keeps turning generations over, clear() calls meanwhile. Every
 * reply must be exactly the answer stored for its question with the asker's ID; any memory error
 * aborts the child, and the test sees its exit code and report. Then a flood of 64 KiB one-off
 * datagrams while the child's JS thread is blocked: the misses queued for JS stay within their
 * byte bound, the rest are dropped and counted.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'cbdns-asan-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('native UDP loop under the sanitizers', () => {
  it('answers 50,000 random datagrams exactly and bounds its queue in a flood, with no memory error', async () => {
    const cc = process.env['CC'] ?? 'cc';
    const addon = join(dir, 'crowbar_udp_asan.node');
    await run(cc, [
      '-O1',
      '-g',
      '-fsanitize=address,undefined',
      '-fno-omit-frame-pointer',
      '-std=gnu11',
      '-shared',
      '-fPIC',
      `-I${join(root, 'node_modules/node-api-headers/include')}`,
      '-o',
      addon,
      join(root, 'dns-sidecar/native/udp.c'),
      '-pthread',
    ]);
    const lib = async (name: string) => (await run(cc, [`-print-file-name=${name}`])).stdout.trim();
    const preload = `${await lib('libasan.so')}:${await lib('libubsan.so')}`;
    const { stdout, stderr } = await run(
      process.execPath,
      [join(root, 'dns-sidecar/native/stress.test-helper.ts'), addon, '50000'],
      {
        env: {
          ...process.env,
          LD_PRELOAD: preload,
          // Node itself keeps memory to the end by design; leaks are not what is checked here.
          ASAN_OPTIONS: 'detect_leaks=0',
          UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
        },
        timeout: 120_000,
        maxBuffer: 16 << 20,
      },
    ).catch((err: unknown) => {
      throw new Error(`the sanitized stress run failed`, { cause: err });
    });
    expect(stderr).not.toMatch(/AddressSanitizer|runtime error/);
    const r = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, number>;
    expect(r['bad']).toBe(0);
    // Most questions repeat, so most are answered in C; every one-off went up to JS.
    expect(r['hits']).toBeGreaterThan(20_000);
    expect(r['misses']).toBeGreaterThan(100);
    expect(r['replies']).toBeGreaterThan(1000);
    // The flood while JS was blocked: what was read past MISS_BYTES (8 MiB, about 127 datagrams
    // of 64 KiB) was dropped and counted, not queued.
    expect(r['floodDropped']).toBeGreaterThan(0);
    expect((r['floodRead'] ?? 0) - (r['floodDropped'] ?? 0)).toBeLessThanOrEqual(128);
  }, 180_000);
});
