import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderTemplate } from '../../operator/provisioner/api.ts';
import { e2ePreseed } from './e2e-preseed.ts';

describe("make e2e-install's preseed", () => {
  it('is the built-in on the local mirror, and debconf-set-selections --checkonly accepts it', async () => {
    const text = renderTemplate(e2ePreseed('10.0.0.2:8080'), {
      name: 'd52-54-00-00-00-01.lab.example.com',
      hostname: 'd52-54-00-00-00-01',
      domain: 'lab.example.com',
      api: 'https://10.0.0.1:8081',
    });
    expect(text).toContain('d-i mirror/http/hostname string 10.0.0.2:8080\n');
    expect(text).toContain('d-i mirror/http/directory string /files/debian\n');
    expect(text).toContain('tasksel tasksel/first multiselect ssh-server\n');
    expect(text).toContain('d-i preseed/late_command string export SSL_CERT_FILE=');
    expect(text).not.toContain('deb.debian.org');
    const dir = mkdtempSync(join(tmpdir(), 'e2e-preseed-'));
    try {
      const f = join(dir, 'preseed.cfg');
      writeFileSync(f, text);
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        execFile('debconf-set-selections', ['--checkonly', f], (err, out, errOut) => {
          resolve({ code: err ? 1 : 0, out: out + errOut });
        });
      });
      expect(r).toEqual({ code: 0, out: '' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
