/** Where the Go-built control-plane binaries live (built by tools/build-bins.sh, never committed). */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const KUBE_VERSION = 'v1.36.3';

export function binDir(): string {
  return (
    process.env['CROWBAR_BIN_DIR'] ?? join(homedir(), '.cache', 'crowbar', 'bin', KUBE_VERSION)
  );
}

/** Path to a built binary; throws (never skips) when it is missing, saying how to build it. */
export function bin(
  name: 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kubectl' | 'helm',
): string {
  const p = join(binDir(), name);
  if (!existsSync(p)) {
    throw new Error(
      `${name} not found at ${p}: run \`make bins\` (builds it from the Go module proxy; set CROWBAR_BIN_DIR to use another cache)`,
    );
  }
  return p;
}
