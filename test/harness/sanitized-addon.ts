/**
 * A native addon's C code under AddressSanitizer and UBSan (the sidecars' UDP loops): built again
 * by tools/build-native.sh with SANITIZE=1 into a temp dir and driven by a stress helper in a
 * child node with the sanitizer runtimes preloaded. Any memory error or undefined behaviour aborts
 * the child; its report is in the error.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

/**
 * Builds `source` (relative to the repo) sanitized and runs `helper` (relative to the repo) with
 * the addon's path and `args`; resolves to the helper's last stdout line, parsed as JSON.
 */
export async function runSanitized(
  source: string,
  helper: string,
  args: string[],
  timeoutMs: number,
): Promise<{ result: Record<string, unknown>; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'cb-asan-'));
  try {
    const addon = join(dir, `${basename(source, '.c')}_asan.node`);
    await run(join(root, 'tools/build-native.sh'), [join(root, source), addon], {
      env: { ...process.env, SANITIZE: '1' },
    });
    const cc = process.env['CC'] ?? 'cc';
    const lib = async (name: string) => (await run(cc, [`-print-file-name=${name}`])).stdout.trim();
    const preload = `${await lib('libasan.so')}:${await lib('libubsan.so')}`;
    const { stdout, stderr } = await run(process.execPath, [join(root, helper), addon, ...args], {
      env: {
        ...process.env,
        LD_PRELOAD: preload,
        // Node itself keeps memory to the end by design; leaks are not what is checked here.
        ASAN_OPTIONS: 'detect_leaks=0',
        UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
      },
      timeout: timeoutMs,
      maxBuffer: 16 << 20,
    }).catch((err: unknown) => {
      throw new Error(`the sanitized stress run of ${source} failed`, { cause: err });
    });
    const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
    return { result, stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
