/**
 * Checks that a PNG rendered by `kubectl crowbar graph -o png` shows the graph it was drawn from:
 * Graphviz's own layout of the same dot text (`dot -Tplain`, deterministic) says where each
 * noderole box and each edge is; the decoded PNG must have the box's fill colour inside every box
 * and a dark pixel on every edge's curve. Nothing here trusts the renderer's word: it reads pixels.
 */
import { spawnSync } from 'node:child_process';
import { PNG } from 'pngjs';

export interface GraphPngReport {
  width: number;
  height: number;
  nodes: number;
  edges: number;
  /** One line per box or edge that is not where the layout puts it. */
  missing: string[];
}

/** Tokens of one `-Tplain` line: bare words and double-quoted strings (with \" escapes). */
function tokens(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of line.matchAll(re))
    out.push(m[1] !== undefined ? m[1].replace(/\\"/g, '"') : (m[2] ?? ''));
  return out;
}

const hex = (c: string): [number, number, number] => [
  parseInt(c.slice(1, 3), 16),
  parseInt(c.slice(3, 5), 16),
  parseInt(c.slice(5, 7), 16),
];

/** A cubic Bézier at t. */
function bezier(p: [number, number][], t: number): [number, number] {
  const [a, b, c, d] = p as [
    [number, number],
    [number, number],
    [number, number],
    [number, number],
  ];
  const u = 1 - t;
  const f = (i: 0 | 1) =>
    u * u * u * a[i] + 3 * u * u * t * b[i] + 3 * u * t * t * c[i] + t * t * t * d[i];
  return [f(0), f(1)];
}

export function checkGraphPng(png: Buffer, dot: string): GraphPngReport {
  const r = spawnSync('dot', ['-Tplain'], { input: dot, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`dot -Tplain failed: ${r.stderr.toString()}`);
  const img = PNG.sync.read(png);
  const lines = r.stdout.toString().split('\n').map(tokens);
  const graph = lines.find((t) => t[0] === 'graph');
  if (!graph) throw new Error('dot -Tplain gave no graph line');
  const [wIn, hIn] = [Number(graph[2]), Number(graph[3])];
  // PNG at 96 dpi; Graphviz pads the drawing by 4 points on each side.
  const s = img.width / (wIn * 72 + 8);
  const px = (xIn: number, yIn: number): [number, number] => [
    Math.round((xIn * 72 + 4) * s),
    Math.round((hIn * 72 - yIn * 72 + 4) * s),
  ];
  const at = (x: number, y: number): [number, number, number] => {
    const i = (img.width * y + x) * 4;
    return [img.data[i] ?? 0, img.data[i + 1] ?? 0, img.data[i + 2] ?? 0];
  };
  const near = (a: [number, number, number], b: [number, number, number], tol: number) =>
    a.every((v, i) => Math.abs(v - (b[i] ?? 0)) <= tol);
  const missing: string[] = [];
  let nodes = 0;
  let edges = 0;
  for (const t of lines) {
    if (t[0] === 'node') {
      nodes++;
      // node name x y width height label style shape color fillcolor (inches)
      const [x, y, w] = [Number(t[2]), Number(t[3]), Number(t[4])];
      const fill = hex(t[10] ?? '#000000');
      // Just inside the box's left side, at mid height: fill, not label text.
      const [cx, cy] = px(x - w / 2 + 0.06, y);
      if (!near(at(cx, cy), fill, 6))
        missing.push(
          `box ${t[1] ?? ''} at (${String(cx)},${String(cy)}) is rgb(${at(cx, cy).join(',')}), not ${t[10] ?? ''}`,
        );
    } else if (t[0] === 'edge') {
      edges++;
      // edge tail head n x1 y1 ... xn yn style color: a B-spline of cubic pieces
      const n = Number(t[3]);
      const pts: [number, number][] = [];
      for (let i = 0; i < n; i++) pts.push([Number(t[4 + 2 * i]), Number(t[5 + 2 * i])]);
      const piece = Math.floor((n - 1) / 3 / 2) * 3;
      const [ex, ey] = bezier(pts.slice(piece, piece + 4), 0.5);
      const [cx, cy] = px(ex, ey);
      let dark = false;
      for (let dx = -2; dx <= 2 && !dark; dx++)
        for (let dy = -2; dy <= 2 && !dark; dy++) {
          const c = at(cx + dx, cy + dy);
          dark = c[0] < 160 && c[1] < 160 && c[2] < 160;
        }
      if (!dark)
        missing.push(
          `edge ${t[1] ?? ''} -> ${t[2] ?? ''}: no line at (${String(cx)},${String(cy)})`,
        );
    }
  }
  return { width: img.width, height: img.height, nodes, edges, missing };
}
