import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';

/**
 * The examples under Import > Examples, as the build copied them into examples/ (the only folder
 * Node-RED reads them from): the rules of conventions A2 and node-red-dev's N02.
 */
const ROOT = path.resolve(__dirname, '..', '..', '..');
const EXAMPLES = path.join(ROOT, 'examples');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } };

interface FlowNode {
  id: string;
  type: string;
  z?: string;
  x?: number;
  y?: number;
  name?: string;
  info?: string;
  server?: string;
  endpoint?: string;
  wires?: string[][];
}

/** Core nodes the examples may use, besides ours. */
const CORE = new Set([
  'comment',
  'inject',
  'debug',
  'function',
  'switch',
  'change',
  'catch',
  'status',
  'complete',
  'template',
  'delay',
  'http request',
  'file in',
  'link in',
  'link out',
]);

const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'));
const flows = files.map((f) => ({ file: f, nodes: JSON.parse(readFileSync(path.join(EXAMPLES, f), 'utf8')) as FlowNode[] }));
const ours = Object.keys(pkg['node-red'].nodes);
/** A config node type says so in its editor definition. */
const isConfigType = (type: string): boolean => /category:\s*"config"/.test(readFileSync(path.join(ROOT, 'dist', 'nodes', `${type}.html`), 'utf8'));

describe('example flows (Import > Examples)', function () {
  it('holds only JSON files: the numbered examples and the full server flow', () => {
    expect(readdirSync(EXAMPLES).filter((f) => !f.endsWith('.json'))).to.deep.equal([]);
    expect(files).to.include.members([
      '01 - Upload a package.json',
      '02 - Assign a package to a profile.json',
      '03 - Pace updates with a rate queue.json',
      '04 - Notify devices.json',
      '05 - Serve HTTP devices.json',
      '06 - Track update states.json',
      '10 - Roll out in waves.json',
      'ThingsBoard-compatible OTA server.json',
    ]);
  });

  it('shows every non-config node of the package in at least one example', () => {
    const used = new Set(flows.flatMap((f) => f.nodes.map((n) => n.type)));
    const nonConfig = ours.filter((t) => !isConfigType(t));
    expect(nonConfig).to.include.members(['ota-package-store', 'ota-assign', 'ota-rate-queue', 'ota-notify', 'ota-http', 'ota-state-tracker', 'ota-rollout']);
    expect(nonConfig.filter((t) => !used.has(t))).to.deep.equal([]);
  });

  for (const { file, nodes } of flows) {
    describe(file, function () {
      // As Node-RED tells them apart: a node without a position is a config node.
      const config = nodes.filter((n) => n.x === undefined && n.y === undefined);
      const placed = nodes.filter((n) => !config.includes(n));

      it('opens with a comment node that explains it', () => {
        expect(nodes[0]?.type).to.equal('comment');
        expect(nodes[0]?.name).to.be.a('string').and.not.equal('');
        expect(nodes[0]?.info).to.be.a('string').with.length.above(100);
      });

      it('puts its nodes on one tab and its config nodes on none', () => {
        expect(new Set(placed.map((n) => n.z)).size).to.equal(1);
        for (const n of placed) expect(n, n.id).to.include.keys('x', 'y', 'z');
        for (const n of config) expect(n, n.id).to.not.have.property('z');
        expect(config.map((n) => n.type)).to.include('ota-server');
      });

      it('uses only core nodes and ours, wired to nodes of the flow', () => {
        const ids = new Set(nodes.map((n) => n.id));
        expect(ids.size, 'unique ids').to.equal(nodes.length);
        for (const n of nodes) {
          expect(CORE.has(n.type) || ours.includes(n.type), n.type).to.equal(true);
          for (const target of (n.wires ?? []).flat()) expect(ids.has(target), `${n.id} -> ${target}`).to.equal(true);
          // Every OTA node points at a config node of the same file: its server, or a transport's endpoint.
          if (n.type.startsWith('ota-') && !config.includes(n)) expect(ids.has(n.server ?? n.endpoint ?? ''), `${n.id}'s config node`).to.equal(true);
        }
      });
    });
  }

  it('gives the numbered examples ids of their own, so that two of them import side by side', () => {
    const numbered = flows.filter((f) => /^\d\d - /.test(f.file));
    const all = numbered.flatMap((f) => f.nodes.map((n) => n.id));
    expect(new Set(all).size).to.equal(all.length);
  });
});
