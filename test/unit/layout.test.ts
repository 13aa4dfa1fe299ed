import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';

// Runs from dist/test/unit; the sources sit at the repository root.
const root = path.resolve(__dirname, '../../..');

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.posix.join(dir, e.name);
    if (e.isDirectory()) return sources(rel);
    return e.name.endsWith('.ts') ? [rel] : [];
  });
}

/** Module -> the project modules it imports (type-only imports included: they shape the design too). */
function importGraph(dirs: string[]): Map<string, string[]> {
  const files = dirs.flatMap(sources);
  const modules = new Set(files.map((f) => f.replace(/\.ts$/, '')));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const mod = file.replace(/\.ts$/, '');
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    const targets = [...text.matchAll(/from '(\.[^']*)'/g)].map((m) => {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(mod), m[1]));
      return modules.has(target) ? target : `${target}/index`;
    });
    graph.set(
      mod,
      targets.filter((t) => modules.has(t)),
    );
  }
  return graph;
}

/** The first import cycle found by depth-first search, or null. */
function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (m: string): string[] | null => {
    state.set(m, 'open');
    stack.push(m);
    for (const next of graph.get(m) ?? []) {
      if (state.get(next) === 'open') return [...stack.slice(stack.indexOf(next)), next];
      if (!state.has(next)) {
        const found = visit(next);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(m, 'done');
    return null;
  };
  for (const m of graph.keys()) {
    if (state.has(m)) continue;
    const found = visit(m);
    if (found) return found;
  }
  return null;
}

describe('source layout', () => {
  it('has no import cycles among the engine, the nodes and the commands', () => {
    const cycle = findCycle(importGraph(['server', 'nodes', 'bin']));
    expect(cycle, cycle ? cycle.join(' -> ') : '').to.equal(null);
  });

  it('keeps Node-RED out of the engine', () => {
    const offenders = sources('server').filter((f) => /from 'node-red'|require\('node-red'\)/.test(fs.readFileSync(path.join(root, f), 'utf8')));
    expect(offenders).to.deep.equal([]);
  });
});
