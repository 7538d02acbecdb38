import { describe, expect, it } from 'vitest';
import { applyBindPlan } from './apply.ts';
import type { BindPlan } from './binding.ts';
import { autoBindRoles, MAX_PARENTS, planBind } from './binding.ts';
import { deployment, node, noderole, role, world } from './fixtures.test-helper.ts';
import type { NodeRoleView, RoleView, World } from './world.ts';

const N1 = 'n1.lab.example.com';
const N2 = 'n2.lab.example.com';
const N3 = 'n3.lab.example.com';

// system ← d1 ← d2, and a sibling d3 of d1.
function lab(roles: RoleView[], noderoles: NodeRoleView[] = []): World {
  return world({
    nodes: [node(N1), node(N2), node(N3, { deployment: 'd1' })],
    deployments: [
      deployment('system'),
      deployment('d1'),
      deployment('d2', { parent: 'd1' }),
      deployment('d3'),
    ],
    roles,
    noderoles,
  });
}

function ok(plan: BindPlan) {
  if (!plan.ok) throw new Error(`expected a plan, got: ${plan.reason}`);
  return plan;
}
const created = (plan: BindPlan) =>
  ok(plan).create.map(
    (nr) => `${nr.name}@${nr.deployment}<-[${nr.parents.join(',')}]#${nr.cohort}`,
  );
const refusal = (plan: BindPlan) => (plan.ok ? 'planned' : plan.reason);

const dnsRoles = [role('dns-server'), role('dns-client', { requires: ['dns-server'] })];

describe('planBind (§6.1)', () => {
  it('binds an implicit parent on the same node first, parents before children', () => {
    const w = lab(
      [
        role('base', { flags: ['implicit'] }),
        role('mid', { requires: ['base'] }),
        role('app', { requires: ['mid', 'base'] }),
      ],
      [noderole('base', N2)],
    );
    expect(created(planBind(w, { role: 'app', node: N1, deployment: 'system' }))).toEqual([
      `base.${N1}@system<-[]#0`,
      `mid.${N1}@system<-[base.${N1}]#1`,
      `app.${N1}@system<-[mid.${N1},base.${N1}]#2`,
    ]);
  });

  it('reuses an existing binding of the role on the node, whatever its deployment', () => {
    const w = lab(dnsRoles, [noderole('dns-client', N1, { deployment: 'd1' })]);
    const plan = ok(planBind(w, { role: 'dns-client', node: N1, deployment: 'system' }));
    expect(plan).toMatchObject({ noderole: `dns-client.${N1}`, create: [], addParents: [] });
  });

  it('reuses a non-implicit parent from the deployment or an ancestor, nearest first', () => {
    const w = lab(dnsRoles, [
      noderole('dns-server', N1),
      noderole('dns-server', N2, { deployment: 'd1' }),
    ]);
    expect(created(planBind(w, { role: 'dns-client', node: N3, deployment: 'd2' }))).toEqual([
      `dns-client.${N3}@d2<-[dns-server.${N2}]#1`,
    ]);
    expect(created(planBind(w, { role: 'dns-client', node: N3, deployment: 'd3' }))).toEqual([
      `dns-client.${N3}@d3<-[dns-server.${N1}]#1`,
    ]);
  });

  it('prefers a parent on the same node over one elsewhere in the deployment', () => {
    const w = lab(dnsRoles, [
      noderole('dns-server', N1),
      noderole('dns-server', N3, { deployment: 'd1' }),
    ]);
    expect(created(planBind(w, { role: 'dns-client', node: N3, deployment: 'd2' }))).toEqual([
      `dns-client.${N3}@d2<-[dns-server.${N3}]#1`,
    ]);
  });

  it('does not look in sibling or child deployments; binds the parent locally instead', () => {
    const w = lab(dnsRoles, [noderole('dns-server', N3, { deployment: 'd1' })]);
    expect(created(planBind(w, { role: 'dns-client', node: N2, deployment: 'd3' }))).toEqual([
      `dns-server.${N2}@d3<-[]#0`,
      `dns-client.${N2}@d3<-[dns-server.${N2}]#1`,
    ]);
  });

  it('uses a noderole whose role provides the parent', () => {
    const w = lab(
      [...dnsRoles, role('bind9', { provides: ['dns-server'] })],
      [noderole('bind9', N1)],
    );
    expect(created(planBind(w, { role: 'dns-client', node: N2, deployment: 'system' }))).toEqual([
      `dns-client.${N2}@system<-[bind9.${N1}]#1`,
    ]);
  });

  it('makes the child of a cluster role depend on every peer in that deployment', () => {
    const w = lab(
      [role('consul', { flags: ['cluster'] }), role('consul-client', { requires: ['consul'] })],
      [noderole('consul', N1), noderole('consul', N2)],
    );
    expect(created(planBind(w, { role: 'consul-client', node: N3, deployment: 'd3' }))).toEqual([
      `consul-client.${N3}@d3<-[consul.${N1},consul.${N2}]#1`,
    ]);
    // The peers are those of the found parent's deployment: a local consul in d1 has none.
    const local = lab(
      [...w.roles.values()],
      [...w.noderoles.values(), noderole('consul', N3, { deployment: 'd1' })],
    );
    expect(created(planBind(local, { role: 'consul-client', node: N3, deployment: 'd3' }))).toEqual(
      [`consul-client.${N3}@d3<-[consul.${N3}]#1`],
    );
  });

  it("gives a new cluster peer its peers' children, raising cohorts below (§6.1 bind_cluster_children)", () => {
    const w = lab(
      [
        role('base', { flags: ['implicit'] }),
        role('consul', { flags: ['cluster'], requires: ['base'] }),
        role('client', { requires: ['consul'] }),
        role('leaf', { requires: ['client'] }),
      ],
      [
        noderole('base', N1),
        noderole('consul', N1, { parents: [`base.${N1}`], cohort: 1 }),
        noderole('client', N2, { parents: [`consul.${N1}`], cohort: 2 }),
        noderole('leaf', N2, { parents: [`client.${N2}`], cohort: 3 }),
      ],
    );
    // On n3 consul needs a deeper chain: base → extra → consul.
    const deeper = new Map(w.roles)
      .set('consul', role('consul', { flags: ['cluster'], requires: ['base', 'extra'] }))
      .set('extra', role('extra', { flags: ['implicit'], requires: ['base'] }));
    const plan = ok(
      planBind({ ...w, roles: deeper }, { role: 'consul', node: N3, deployment: 'system' }),
    );
    expect(plan.create.map((nr) => nr.name)).toEqual([`base.${N3}`, `extra.${N3}`, `consul.${N3}`]);
    expect(plan.addParents).toEqual([
      { name: `client.${N2}`, parents: [`consul.${N1}`, `consul.${N3}`], cohort: 3 },
    ]);
    expect(plan.recohort).toEqual([{ name: `leaf.${N2}`, cohort: 4 }]);
    const after = applyBindPlan(w, plan);
    expect(after.noderoles.get(`client.${N2}`)?.parents).toEqual([`consul.${N1}`, `consul.${N3}`]);
    expect(w.noderoles.get(`client.${N2}`)?.parents, 'input untouched').toEqual([`consul.${N1}`]);
  });

  it.each([
    {
      rule: 'conflicts (this role names the other)',
      roles: [role('a', { conflicts: ['b'] }), role('b')],
      bound: ['b'],
      bind: 'a',
      want: /conflicts with role b, and b\.n1\.lab\.example\.com is bound on node n1/,
    },
    {
      rule: 'conflicts (the other names this role)',
      roles: [role('a'), role('b', { conflicts: ['a'] })],
      bound: ['b'],
      bind: 'a',
      want: /conflicts with role b/,
    },
    {
      rule: 'a role already provided on the node',
      roles: [role('dns-server'), role('bind9', { provides: ['dns-server'] })],
      bound: ['bind9'],
      bind: 'dns-server',
      want: /already provides dns-server/,
    },
    {
      rule: 'providing a role already bound on the node',
      roles: [role('dns-server'), role('bind9', { provides: ['dns-server'] })],
      bound: ['dns-server'],
      bind: 'bind9',
      want: /role bind9 provides dns-server/,
    },
    {
      rule: 'overlapping provides',
      roles: [
        role('bind9', { provides: ['dns-server'] }),
        role('unbound', { provides: ['dns-server', 'resolver'] }),
      ],
      bound: ['bind9'],
      bind: 'unbound',
      want: /both provide dns-server/,
    },
    {
      rule: 'a conflict of a parent bound on the way',
      roles: [
        role('base', { flags: ['implicit'], conflicts: ['other'] }),
        role('app', { requires: ['base'] }),
        role('other'),
      ],
      bound: ['other'],
      bind: 'app',
      want: /role base conflicts with role other/,
    },
    {
      rule: 'abstract roles, naming providers',
      roles: [
        role('dns-service', { flags: ['abstract'] }),
        role('bind9', { provides: ['dns-service'] }),
      ],
      bound: [],
      bind: 'dns-service',
      want: /abstract and cannot be bound; bind one that provides it \(bind9\)/,
    },
    {
      rule: 'an abstract parent nobody provides',
      roles: [
        role('dns-service', { flags: ['abstract'] }),
        role('client', { requires: ['dns-service'] }),
      ],
      bound: [],
      bind: 'client',
      want: /role dns-service \(needed by client\) is abstract/,
    },
    {
      rule: 'unresolved requires, named',
      roles: [role('app', { requires: ['db', 'cache'] })],
      bound: [],
      bind: 'app',
      want: /requires db, cache, which do not exist yet/,
    },
    {
      rule: 'unresolved requires of a parent',
      roles: [role('db', { requires: ['storage'] }), role('app', { requires: ['db'] })],
      bound: [],
      bind: 'app',
      want: /role db \(needed by app\) requires storage/,
    },
    {
      rule: 'cycles, with the path',
      roles: [
        role('a', { requires: ['b'] }),
        role('b', { requires: ['c'] }),
        role('c', { requires: ['a'] }),
        role('top', { requires: ['a'] }),
      ],
      bound: [],
      bind: 'top',
      want: /form a cycle \(a -> b -> c -> a\); remove one of these requires/,
    },
    { rule: 'unknown roles', roles: [], bound: [], bind: 'nope', want: /role nope does not exist/ },
  ])('refuses $rule', ({ roles, bound, bind, want }) => {
    const w = lab(
      roles,
      bound.map((r) => noderole(r, N1)),
    );
    const reason = refusal(planBind(w, { role: bind, node: N1, deployment: 'system' }));
    expect(reason).toMatch(/^cannot bind role \S+ to node n1\.lab\.example\.com: /);
    expect(reason).toMatch(want);
  });

  it('an abstract parent is satisfied by a provider already bound on the node', () => {
    const w = lab(
      [
        role('dns-service', { flags: ['abstract'] }),
        role('bind9', { provides: ['dns-service'] }),
        role('client', { requires: ['dns-service'] }),
      ],
      [noderole('bind9', N1)],
    );
    expect(created(planBind(w, { role: 'client', node: N1, deployment: 'system' }))).toEqual([
      `client.${N1}@system<-[bind9.${N1}]#1`,
    ]);
  });

  it('refuses unknown nodes and deployments', () => {
    const w = lab(dnsRoles);
    expect(
      refusal(
        planBind(w, { role: 'dns-server', node: 'n9.lab.example.com', deployment: 'system' }),
      ),
    ).toMatch(/node n9\.lab\.example\.com does not exist/);
    expect(refusal(planBind(w, { role: 'dns-server', node: N1, deployment: 'nope' }))).toMatch(
      /deployment nope does not exist; create it first/,
    );
  });
});

describe('autoBindRoles (§6.3)', () => {
  const roles = [
    role('admin-base', { flags: ['bootstrap'] }),
    role('admin-node', { flags: ['bootstrap', 'implicit'], requires: ['admin-base'] }),
    role('managed-node', { flags: ['discovery'] }),
    role('abstract-boot', { flags: ['bootstrap', 'abstract'] }),
    role('plain'),
  ];
  const w = world({
    nodes: [
      node(N1, { admin: true }),
      node(N2),
      node('phantom.internal.local.lab', { system: true }),
    ],
    roles,
    noderoles: [noderole('admin-base', N1)],
  });

  it('binds bootstrap roles to an admin node, skipping bound and abstract ones', () => {
    expect(autoBindRoles(w, N1)).toEqual([{ role: 'admin-node', node: N1, deployment: 'system' }]);
  });
  it('binds discovery roles to a non-admin node', () => {
    expect(autoBindRoles(w, N2)).toEqual([
      { role: 'managed-node', node: N2, deployment: 'system' },
    ]);
  });
  it('binds nothing to a system node', () => {
    expect(autoBindRoles(w, 'phantom.internal.local.lab')).toEqual([]);
  });
});

describe('planBind past the parents limit', () => {
  /** A cluster role `srv` bound on `peers` nodes in system; `top` requires it. */
  function cluster(peers: number): World {
    const nodes = Array.from({ length: peers + 1 }, (_, i) =>
      node(`m${String(i)}.lab.example.com`),
    );
    return world({
      nodes,
      roles: [role('srv', { flags: ['cluster'] }), role('top', { requires: ['srv'] })],
      noderoles: nodes
        .slice(0, peers)
        .map((n) => noderole('srv', n.name, { state: 'active', cohort: 0 })),
    });
  }

  it(`binds a child of ${String(MAX_PARENTS)} cluster peers and refuses one more, saying why`, () => {
    const target = (w: World) => [...w.nodes.keys()].sort().at(-1) ?? '';
    const atLimit = cluster(MAX_PARENTS);
    const plan = ok(
      planBind(atLimit, { role: 'top', node: target(atLimit), deployment: 'system' }),
    );
    expect(plan.create.find((nr) => nr.role === 'top')?.parents).toHaveLength(MAX_PARENTS);
    const over = cluster(MAX_PARENTS + 1);
    expect(
      refusal(planBind(over, { role: 'top', node: target(over), deployment: 'system' })),
    ).toMatch(
      /would have 1025 parents, more than the 1024 a noderole can record.*split those nodes across deployments/,
    );
  });

  it('refuses the peer that would push an existing child past the limit', () => {
    const w = cluster(MAX_PARENTS);
    const last = [...w.nodes.keys()].sort().at(-1) ?? '';
    const withChild = applyBindPlan(
      w,
      ok(planBind(w, { role: 'top', node: last, deployment: 'system' })),
    );
    const extra = world({
      nodes: [...withChild.nodes.values(), node('extra.lab.example.com')],
      roles: [...withChild.roles.values()],
      noderoles: [...withChild.noderoles.values()],
    });
    expect(
      refusal(
        planBind(extra, { role: 'srv', node: 'extra.lab.example.com', deployment: 'system' }),
      ),
    ).toMatch(/would have 1025 parents/);
  });
});
