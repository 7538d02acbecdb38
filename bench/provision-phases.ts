/**
 * Where the seconds of `make bench-provision` go, per VM (pure: stamped console lines and API
 * events in, phases out). The bench stamps each line of a VM's serial console with the wall time
 * and its qemu process's CPU time since power-on when it reads the line; the API loop adds what
 * only the operator's side shows (the discovery noderole started, active). A phase runs from the
 * previous marker found to its own, so a marker that is missing (a console without it) folds its
 * time into the next phase instead of inventing a zero.
 */

/** One console line as the bench read it: seconds since power-on, wall and qemu CPU. */
export interface StampedLine {
  t: number;
  cpu: number;
  text: string;
}

/** A point in a VM's provisioning, with wall and CPU seconds since power-on. */
export interface Mark {
  t: number;
  cpu: number;
}

/**
 * The markers in the order a BIOS VM reaches them, each the first console line it matches
 * (`last`: the last such line before the next marker, for the initrds iPXE fetches in turn).
 * iPXE prints `<url>... ok` when a download ends; the agent prints
 * `[<uptime>] crowbar-discovery: ...` (tools/discovery-image/agent).
 */
export const CONSOLE_MARKERS: readonly { phase: string; re: RegExp; last?: boolean }[] = [
  { phase: 'firmware', re: /iPXE \d/ },
  { phase: 'ipxe-netconf', re: /^Configuring \(net0 .* ok/ },
  { phase: 'ipxe-script', re: /\/ipxe\/\S+\.\.\. ok/ },
  // iPXE prints its progress (percentages) between the URL and `ok`.
  { phase: 'kernel-fetch', re: /\/vmlinuz\S*\.\.\..* ok$/ },
  { phase: 'initrd-fetch', re: /\.(cpio|gz|zst|img|xz)\S*\.\.\..* ok$/, last: true },
  // The kernel's own lines when it prints them (not under `quiet`).
  { phase: 'kernel-decompress', re: /\] Linux version / },
  { phase: 'kernel-boot', re: /\] Run \/init as init process/ },
  { phase: 'agent-start', re: /crowbar-discovery: agent started/ },
  { phase: 'modules', re: /crowbar-discovery: modules loaded/ },
  { phase: 'dhcp', re: /crowbar-discovery: interface \S+ mac / },
  { phase: 'facts', re: /crowbar-discovery: registering/ },
  { phase: 'register', re: /crowbar-discovery: registered as / },
  { phase: 'sshd', re: /crowbar-discovery: sshd started/ },
  {
    phase: 'address',
    re: /crowbar-discovery: (address \S+ on the provisioning network|no address allocated)/,
  },
  { phase: 'alive', re: /crowbar-discovery: alive: / },
];

/** The agent's console prefix: the guest's uptime when it printed the line. */
const AGENT_UPTIME = /\[(\d+(?:\.\d+)?)\] crowbar-discovery: /;

/** Drops ANSI escapes, carriage returns and iPXE's backspaced spinner from a console line. */
export function cleanConsoleLine(s: string): string {
  return (
    s
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b\[[0-9;=?]*[A-Za-z]/g, '')
      // eslint-disable-next-line no-control-regex
      .replace(/.\x08/g, '')
      // eslint-disable-next-line no-control-regex
      .replace(/[\r\x00-\x08]/g, '')
      .trim()
  );
}

/**
 * Splits new console bytes into complete lines, stamped with `stamp`; returns the lines and the
 * incomplete rest, which waits for the next read.
 */
export function stampLines(
  pending: string,
  chunk: string,
  stamp: Mark,
): { lines: StampedLine[]; rest: string } {
  const parts = (pending + chunk).split('\n');
  const rest = parts.pop() ?? '';
  const lines: StampedLine[] = [];
  for (const p of parts) {
    const text = cleanConsoleLine(p);
    if (text !== '') lines.push({ t: stamp.t, cpu: stamp.cpu, text });
  }
  return { lines, rest };
}

export interface PhaseRow {
  phase: string;
  /** Wall seconds from the previous marker found to this one. */
  wall: number;
  /** qemu CPU seconds over the same stretch (undefined for API-only markers). */
  cpu: number | undefined;
}

/**
 * A VM's phases: the console markers, the kernel's own start (the agent's first line minus the
 * uptime it printed: what lies between the last download and it is iPXE handing over and the
 * kernel decompressing itself), then the API events in the order given.
 */
export function vmPhases(
  lines: readonly StampedLine[],
  api: readonly { phase: string; at: Mark | undefined }[],
): PhaseRow[] {
  const marks: { phase: string; at: Mark }[] = [];
  let from = 0;
  for (const m of CONSOLE_MARKERS) {
    let hit = -1;
    for (let i = from; i < lines.length; i++) {
      if (!m.re.test(lines[i]?.text ?? '')) continue;
      hit = i;
      if (!m.last) break;
    }
    if (hit < 0) continue;
    const line = lines[hit];
    if (!line) continue;
    if (m.phase === 'agent-start' && !marks.some((x) => x.phase === 'kernel-boot')) {
      const up = AGENT_UPTIME.exec(line.text)?.[1];
      const prev = marks.at(-1)?.at;
      if (up !== undefined && prev !== undefined) {
        const kt = line.t - Number(up);
        // The CPU spent before the kernel's clock started is apportioned by wall time: qemu's
        // counter is only read when a line arrives, and the kernel prints nothing of its own
        // under `quiet`.
        if (kt > prev.t) {
          const share = (kt - prev.t) / Math.max(line.t - prev.t, 1e-9);
          marks.push({
            phase: 'kernel-decompress',
            at: { t: kt, cpu: prev.cpu + share * (line.cpu - prev.cpu) },
          });
        }
      }
      marks.push({ phase: 'kernel-boot', at: { t: line.t, cpu: line.cpu } });
    } else marks.push({ phase: m.phase, at: { t: line.t, cpu: line.cpu } });
    from = hit + 1;
  }
  const rows: PhaseRow[] = [];
  let prev: Mark = { t: 0, cpu: 0 };
  for (const m of marks) {
    rows.push({ phase: m.phase, wall: m.at.t - prev.t, cpu: m.at.cpu - prev.cpu });
    prev = m.at;
  }
  for (const e of api) {
    if (!e.at || e.at.t < prev.t) continue;
    rows.push({ phase: e.phase, wall: e.at.t - prev.t, cpu: e.at.cpu - prev.cpu });
    prev = e.at;
  }
  return rows;
}

/** The median of each phase over the VMs that reached it, in the order phases first appear. */
export function medianPhases(perVm: readonly (readonly PhaseRow[])[]): PhaseRow[] {
  const order: string[] = [];
  const walls = new Map<string, number[]>();
  const cpus = new Map<string, number[]>();
  for (const rows of perVm)
    for (const r of rows) {
      if (!walls.has(r.phase)) {
        order.push(r.phase);
        walls.set(r.phase, []);
        cpus.set(r.phase, []);
      }
      walls.get(r.phase)?.push(r.wall);
      if (r.cpu !== undefined) cpus.get(r.phase)?.push(r.cpu);
    }
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
  };
  return order.map((phase) => {
    const c = cpus.get(phase) ?? [];
    return {
      phase,
      wall: median(walls.get(phase) ?? []),
      cpu: c.length > 0 ? median(c) : undefined,
    };
  });
}
