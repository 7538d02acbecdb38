import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jobName } from '../operator/executors/job-spec.ts';
import {
  allowedUsers,
  runnerUserPattern,
  serviceAccountUser,
  statusPolicy,
  statusWriterExpression,
  userClusterRoles,
} from './status-policy.ts';

const W = { namespace: 'crowbar-system', operatorServiceAccount: 'cb-operator' };

describe('status policy', () => {
  it("matches every run's ServiceAccount name (the Job's), in its namespace only", () => {
    const re = new RegExp(runnerUserPattern(W.namespace));
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.nat({ max: 1_000_000 }), (nr, n) => {
        const user = serviceAccountUser(W.namespace, jobName(`${nr}.run-${String(n)}`));
        expect(re.test(user)).toBe(true);
        expect(re.test(serviceAccountUser('other', jobName(`${nr}.run-${String(n)}`)))).toBe(false);
      }),
      { numRuns: 2000 },
    );
    for (const name of [
      'cb-operator-webhook',
      'dns',
      'a-r1-0123456',
      'a-r1-0123456789',
      'A-r1-01234567',
    ]) {
      expect({ name, match: re.test(serviceAccountUser(W.namespace, name)) }).toEqual({
        name,
        match: false,
      });
    }
  });

  it('allows the operator, the DHCP sidecar and extra users by exact name', () => {
    expect(
      allowedUsers({ ...W, dhcpServiceAccount: 'cb-operator-dhcp', extraUsers: ['root"admin'] }),
    ).toEqual([
      'system:serviceaccount:crowbar-system:cb-operator',
      'system:serviceaccount:crowbar-system:cb-operator-dhcp',
      'root"admin',
    ]);
    // JSON string literals are CEL string literals: a quote in a name cannot end the list early.
    expect(statusWriterExpression({ ...W, extraUsers: ['x"] || true || ["'] })).toContain(
      String.raw`"x\"] || true || [\""`,
    );
  });

  it('binds the policy with Deny, on the status of every crowbar.dev kind', () => {
    const [policy, binding] = statusPolicy('cb', W);
    expect(policy.metadata?.name).toBe('cb-status-writers.crowbar.dev');
    expect(policy.spec?.matchConstraints?.resourceRules).toEqual([
      {
        apiGroups: ['crowbar.dev'],
        apiVersions: ['*'],
        operations: ['UPDATE'],
        resources: ['*/status'],
      },
    ]);
    expect(binding.spec).toEqual({
      policyName: 'cb-status-writers.crowbar.dev',
      validationActions: ['Deny'],
    });
  });

  it('gives viewers and editors no status', () => {
    for (const r of userClusterRoles('cb')) {
      for (const rule of r.rules ?? []) {
        expect(rule.resources?.some((x) => x.includes('/'))).toBe(false);
      }
    }
  });
});
