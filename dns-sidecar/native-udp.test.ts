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
import { describe, expect, it } from 'vitest';
import { runSanitized } from '../test/harness/sanitized-addon.ts';

describe('native UDP loop under the sanitizers', () => {
  it('answers 50,000 random datagrams exactly and bounds its queue in a flood, with no memory error', async () => {
    const { result, stderr } = await runSanitized(
      'dns-sidecar/native/udp.c',
      'dns-sidecar/native/stress.test-helper.ts',
      ['50000'],
      120_000,
    );
    expect(stderr).not.toMatch(/AddressSanitizer|runtime error/);
    const r = result as Record<string, number>;
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
