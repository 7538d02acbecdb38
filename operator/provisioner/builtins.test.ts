import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderTemplate } from './api.ts';
import { DEBIAN_LATE_SH, DEBIAN_PRESEED, LATE_COMMAND, debianBootEnv } from './builtins.ts';
import { acknowledged, installerSeen, resumeStep, targetOs } from './os-install.ts';

const vars = {
  name: 'd52-54-00-00-00-01.lab.example.com',
  hostname: 'd52-54-00-00-00-01',
  domain: 'lab.example.com',
  mac: '52:54:00:00:00:01',
  address: '10.0.0.160',
  api: 'https://10.0.0.1:8081',
  bootEnv: 'debian-12-install',
  nodeToken: 'tok-node',
  installToken: 'tok-install',
  sshKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB crowbar-operator',
};

/** Runs a program; resolves with its exit code and output (never rejects). */
function run(bin: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(bin, args, (err, stdout, stderr) => {
      resolve({
        code: err ? ((err as { code?: number }).code ?? 1) : 0,
        out: stdout + stderr,
      });
    });
  });
}

describe('debian-12-install', () => {
  it('renders a preseed that debconf-set-selections --checkonly accepts, with the late command', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pro-preseed-'));
    try {
      const text = renderTemplate(DEBIAN_PRESEED, vars);
      const f = join(dir, 'preseed.cfg');
      writeFileSync(f, text);
      const r = await run('debconf-set-selections', ['--checkonly', f]);
      expect(r.out).toBe('');
      expect(r.code).toBe(0);
      expect(text).toContain('d-i netcfg/get_hostname string d52-54-00-00-00-01');
      expect(text).toContain(
        `d-i preseed/late_command string export SSL_CERT_FILE=/etc/crowbar/ca.pem; n=0; until wget -q -O /tmp/crowbar-late.sh ${vars.api}/provision/v1/nodes/${vars.name}/files/late.sh; do n=$((n+1)); [ $n -ge 300 ] && exit 1; sleep 2; done; sh /tmp/crowbar-late.sh`,
      );
      // The check can fail: a broken line is refused.
      writeFileSync(f, `${text}d-i broken\n`);
      expect((await run('debconf-set-selections', ['--checkonly', f])).code).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('renders a late.sh that sh -n accepts and that holds the install token, not in the preseed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pro-late-'));
    try {
      const f = join(dir, 'late.sh');
      writeFileSync(f, renderTemplate(DEBIAN_LATE_SH, vars));
      expect((await run('sh', ['-n', f])).code).toBe(0);
      const text = renderTemplate(DEBIAN_LATE_SH, vars);
      expect(text).toContain('Authorization: Bearer tok-install');
      expect(text).toContain(`${vars.api}/provision/v1/nodes/${vars.name}/installed`);
      expect(renderTemplate(DEBIAN_PRESEED, vars)).not.toContain('tok-');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the per-node preseed URL in its kernel arguments', () => {
    const env = debianBootEnv();
    expect(env.kernelArgs).toContain(
      'auto=true priority=critical netcfg/no_default_route=true url={{api}}/provision/v1/nodes/{{name}}/files/preseed.cfg',
    );
    // Answered before the preseed: d-i asks for name servers when DHCP gives none.
    expect(env.kernelArgs).toMatch(/ netcfg\/get_nameservers= /);
    expect(env.files?.map((f) => f.name)).toEqual(['preseed.cfg', 'late.sh']);
    expect(LATE_COMMAND).toContain('{{api}}');
  });
});

describe('os-install pure parts', () => {
  it('takes an installer boot environment as target_os', () => {
    expect(targetOs({ target_os: 'debian-12-install' })).toBe('debian-12-install');
    expect(targetOs({ target_os: 'local' })).toMatchObject({
      error: expect.stringContaining('target_os') as unknown,
    });
    expect(targetOs({})).toHaveProperty('error');
  });

  it('counts an acknowledgement only for the target at the written generation or later', () => {
    const node = (applied: string, generation: number) => ({
      apiVersion: 'crowbar.dev/v1alpha1' as const,
      kind: 'Node' as const,
      metadata: { name: 'n' },
      spec: {},
      status: { bootEnv: { applied, generation } },
    });
    expect(acknowledged(node('x-install', 3), 'x-install', 3)).toBe(true);
    expect(acknowledged(node('x-install', 4), 'x-install', 3)).toBe(true);
    expect(acknowledged(node('x-install', 2), 'x-install', 3)).toBe(false);
    expect(acknowledged(node('local', 3), 'x-install', 3)).toBe(false);
    expect(acknowledged(undefined, 'x-install', 1)).toBe(false);
  });

  it('resumes an install run from its journal: never a second power cycle once it happened', () => {
    const R = 'provisioner-os-install.n.run-1';
    const T = 'debian-12-install';
    const at = '2026-12-01T10:00:00.000Z';
    const rec = (phase: 'requested' | 'rebooting' | 'rebooted' | 'fetched' | 'installed') => ({
      run: R,
      target: T,
      phase,
      generation: 4,
      cycles: 1,
      at,
    });
    // Nothing journalled, another run's journal, another target: start from the top.
    expect(resumeStep(undefined, R, T, 1000)).toEqual({ step: 'request' });
    expect(resumeStep({ ...rec('rebooted'), run: 'x.run-1' }, R, T, 1000)).toEqual({
      step: 'request',
    });
    expect(resumeStep({ ...rec('rebooted'), target: 'y-install' }, R, T, 1000)).toEqual({
      step: 'request',
    });
    // Asked for the boot environment only: ask again (idempotent), then cycle.
    expect(resumeStep(rec('requested'), R, T, 1000)).toEqual({ step: 'request' });
    // Asked for a cycle, outcome unknown: wait for the installer until the request + 1 s.
    expect(resumeStep(rec('rebooting'), R, T, 1000)).toEqual({
      step: 'confirm',
      generation: 4,
      cycles: 1,
      deadline: Date.parse(at) + 1000,
    });
    // The cycle happened, or the installer showed up: never again.
    for (const p of ['rebooted', 'fetched', 'installed'] as const)
      expect(resumeStep(rec(p), R, T, 1000)).toEqual({ step: 'done', phase: p });
    expect(installerSeen(rec('fetched'), R)).toBe(true);
    expect(installerSeen(rec('installed'), R)).toBe(true);
    expect(installerSeen(rec('rebooted'), R)).toBe(false);
    expect(installerSeen({ ...rec('fetched'), run: 'x.run-2' }, R)).toBe(false);
  });
});
