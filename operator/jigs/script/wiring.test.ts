import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { Network, Node, Role } from '../../../generated/crowbar.ts';
import { LIMITS } from './protocol.ts';
import {
  loadRoleScript,
  parseSecretRef,
  readScriptSnapshot,
  scriptProblem,
  secretKeySource,
  sshAddresses,
} from './wiring.ts';

const notFound = (): ApiException<string> =>
  new ApiException(404, 'not found', '{"message":"not found"}', {});

describe('parseSecretRef', () => {
  it.each([
    ['crowbar-system/ssh-key', { namespace: 'crowbar-system', name: 'ssh-key' }],
    ['ssh-key', { namespace: 'default', name: 'ssh-key' }],
  ])('%s', (v, want) => {
    expect(parseSecretRef(v, 'default')).toEqual(want);
  });
  it.each(['a/b/c', '/x', 'Bad/x', 'x/'])('refuses %s', (v) => {
    expect(() => parseSecretRef(v, 'default')).toThrow(/--ssh-key-secret must be/);
  });
});

describe('sshAddresses', () => {
  const net = (name: string, category: Network['spec']['category']): Network => ({
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Network',
    metadata: { name },
    spec: { category },
  });
  const nets = new Map([
    ['bmc', net('bmc', 'bmc')],
    ['storage', net('storage', 'general')],
    ['lab', net('lab', 'unmanaged')],
    ['prov', net('prov', 'admin')],
  ]);
  const node: Node = {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Node',
    metadata: { name: 'a' },
    spec: {},
    status: {
      addresses: [
        { network: 'bmc', address: '10.0.9.1/24' },
        { network: 'storage', address: '10.0.3.1/24' },
        { network: 'lab', address: '10.0.2.1/24' },
        { network: 'prov', address: '10.0.1.1/24' },
        { network: 'admin', address: 'fd00::1/64' },
      ],
    },
  };
  it('orders admin, unmanaged, general and skips BMC addresses', () => {
    expect(sshAddresses(node, (n) => nets.get(n))).toEqual([
      '10.0.1.1',
      'fd00::1',
      '10.0.2.1',
      '10.0.3.1',
    ]);
  });
});

describe('secretKeySource', () => {
  it('says how to create a missing Secret, then picks it up once it exists', async () => {
    let secret: { data?: Record<string, string> } | undefined;
    let reads = 0;
    const core = {
      readNamespacedSecret: () => {
        reads++;
        return secret ? Promise.resolve(secret) : Promise.reject(notFound());
      },
    };
    const src = secretKeySource(core, { namespace: 'ns', name: 'k' }, 0);
    await expect(src.get()).rejects.toThrow(
      'SSH key Secret ns/k not found: create it with kubectl create secret generic k -n ns --from-file=id_ed25519=',
    );
    secret = { data: { other: 'eA==' } };
    await expect(src.get()).rejects.toThrow(/has no id_ed25519 or ssh-privatekey key/);
    secret = { data: { 'ssh-privatekey': Buffer.from('KEY').toString('base64') } };
    expect((await src.get()).toString()).toBe('KEY');
    const before = reads;
    expect((await src.get()).toString()).toBe('KEY');
    expect(reads).toBe(before); // kept once found
  });
});

describe('loadRoleScript', () => {
  const role = (script: Role['spec']['script']): Role => ({
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Role',
    metadata: { name: 'r' },
    spec: { jig: 'script', ...(script ? { script } : {}) },
  });
  const core = {
    readNamespacedConfigMap: ({ name }: { name: string }) =>
      name === 'cm'
        ? Promise.resolve({ data: { 'run.sh': 'echo hi' } })
        : Promise.reject(notFound()),
  };
  it('reads inline scripts and ConfigMap keys, and says what is missing', async () => {
    expect(await loadRoleScript(core as never, role({ inline: 'x' }))).toBe('x');
    const ref = { namespace: 'ns', name: 'cm', key: 'run.sh' };
    expect(await loadRoleScript(core as never, role({ configMapRef: ref }))).toBe('echo hi');
    await expect(
      loadRoleScript(core as never, role({ configMapRef: { ...ref, key: 'nope' } })),
    ).rejects.toThrow('ConfigMap ns/cm has no key nope');
    await expect(
      loadRoleScript(core as never, role({ configMapRef: { ...ref, name: 'gone' } })),
    ).rejects.toThrow('ConfigMap ns/gone not found');
    await expect(loadRoleScript(core as never, role(undefined))).rejects.toThrow(
      /role r has no script/,
    );
  });
});

describe('scriptProblem', () => {
  it('refuses empty and oversized scripts as the jig does, and counts bytes, not characters', () => {
    expect(scriptProblem('r', 'echo hi')).toBeUndefined();
    expect(scriptProblem('r', '')).toBe('the script of role r is empty');
    expect(scriptProblem('r', 'x'.repeat(LIMITS.scriptBytes))).toBeUndefined();
    expect(scriptProblem('r', 'x'.repeat(LIMITS.scriptBytes + 1))).toBe(
      `the script of role r is ${LIMITS.scriptBytes + 1} bytes, over the 256 KiB limit`,
    );
    // 100 Ki characters of 3 bytes each: under the CRD's character limit, over the byte limit.
    expect(scriptProblem('r', '€'.repeat(100 * 1024))).toMatch(/is 307200 bytes, over the/);
  });
});

describe('readScriptSnapshot', () => {
  it('reads the mounted snapshot and says what is wrong when there is none', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbt-snapshot-'));
    try {
      const file = join(dir, 'script');
      writeFileSync(file, '#!/bin/sh\necho from the snapshot\n');
      expect(await readScriptSnapshot(file)).toBe('#!/bin/sh\necho from the snapshot\n');
      await expect(readScriptSnapshot(join(dir, 'gone'))).rejects.toThrow(
        /cannot read the run's script snapshot .*gone: ENOENT/,
      );
      await expect(readScriptSnapshot(undefined)).rejects.toThrow(
        /no script snapshot mounted \(CROWBAR_SCRIPT_FILE is not set\)/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
