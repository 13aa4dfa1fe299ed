import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import ts from 'typescript';

/**
 * The Node-RED Flow Library scorecard, offline: the rules `node-red-dev validate` applies
 * (node-red-dev-cli checkpackage.js P01-P07 and D01, checknodes.js N01-N02 and its editor-file
 * parse), run against this package without its catalogue look-ups, which need the internet.
 */
const ROOT = path.resolve(__dirname, '..', '..', '..');
const NODE_RED_NODES = path.dirname(require.resolve('@node-red/nodes/package.json'));

interface PackageJson {
  name: string;
  license?: string;
  repository?: { url?: string } | string;
  bugs?: unknown;
  keywords?: string[];
  engines?: { node?: string };
  bin?: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  'node-red'?: { version?: string; nodes?: Record<string, string> };
}

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as PackageJson;
const nodeSets = Object.entries(pkg['node-red']?.nodes ?? {});
// semver ships without types; this is the one function used.
const semver = require('semver') as { satisfies(version: string, range: string): boolean };

/** The object literal given to `RED.nodes.registerType(type, {...})` in an editor file, by type. */
function editorDefinitions(html: string): Map<string, ts.ObjectLiteralExpression> {
  const found = new Map<string, ts.ObjectLiteralExpression>();
  for (const m of html.matchAll(/<script type="text\/javascript">([\s\S]*?)<\/script>/g)) {
    const source = ts.createSourceFile('editor.js', m[1] as string, ts.ScriptTarget.ES2020, true, ts.ScriptKind.JS);
    const visit = (n: ts.Node): void => {
      if (ts.isCallExpression(n) && n.expression.getText(source) === 'RED.nodes.registerType') {
        const [type, def] = n.arguments;
        if (type && ts.isStringLiteral(type) && def && ts.isObjectLiteralExpression(def)) found.set(type.text, def);
      }
      ts.forEachChild(n, visit);
    };
    visit(source);
  }
  return found;
}

function property(def: ts.ObjectLiteralExpression, name: string): ts.Expression | undefined {
  for (const p of def.properties) if (ts.isPropertyAssignment(p) && p.name.getText() === name) return p.initializer;
  return undefined;
}

const isLiteral = (e: ts.Expression): boolean => ts.isStringLiteral(e) || ts.isNumericLiteral(e) || e.kind === ts.SyntaxKind.TrueKeyword || e.kind === ts.SyntaxKind.FalseKeyword;

/** Every node type Node-RED's core registers (its editor files), for the name-clash rule. */
function coreNodeTypes(): Set<string> {
  const types = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.html')) for (const m of readFileSync(p, 'utf8').matchAll(/RED\.nodes\.registerType\(\s*['"]([^'"]+)['"]/g)) types.add(m[1] as string);
    }
  };
  walk(path.join(NODE_RED_NODES, 'core'));
  return types;
}

function exampleFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? exampleFiles(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

describe('Flow Library scorecard (node-red-dev validate rules, offline)', () => {
  describe('package.json', () => {
    it('P01: names a license, and ships its text', () => {
      expect(pkg.license).to.be.a('string').and.not.equal('');
      expect(existsSync(path.join(ROOT, 'LICENSE')), 'LICENSE file').to.equal(true);
    });

    it('P03: names a repository', () => {
      const url = typeof pkg.repository === 'string' ? pkg.repository : pkg.repository?.url;
      expect(url, 'repository.url').to.be.a('string').and.match(/\S/);
    });

    it('P04: has a scoped name, or one starting node-red-contrib-', () => {
      expect(pkg.name).to.match(/^(@[a-z0-9-~][a-z0-9-._~]*\/[a-z0-9-._~]+|node-red-contrib-[a-z0-9-._~]+)$/);
    });

    it('P05: carries the node-red keyword once', () => {
      expect((pkg.keywords ?? []).filter((k) => k === 'node-red')).to.have.length(1);
    });

    it('P06: declares the lowest Node-RED it supports, and the Node-RED tested here meets it', () => {
      const range = pkg['node-red']?.version;
      expect(range, 'node-red.version').to.be.a('string');
      const tested = (JSON.parse(readFileSync(require.resolve('node-red/package.json'), 'utf8')) as { version: string }).version;
      expect(semver.satisfies(tested, range as string), `${tested} satisfies ${String(range)}`).to.equal(true);
    });

    it('P07: declares engines.node, and this Node meets it', () => {
      expect(pkg.engines?.node, 'engines.node').to.be.a('string');
      expect(semver.satisfies(process.version, pkg.engines?.node as string)).to.equal(true);
    });

    it('D01: does not depend on node-red (an optional peer at most), nor on its test helper', () => {
      expect(pkg.dependencies ?? {}).to.not.have.any.keys('node-red', 'node-red-node-test-helper');
      if (pkg.peerDependencies?.['node-red']) expect(pkg.peerDependenciesMeta?.['node-red']?.optional, 'node-red peer is optional').to.equal(true);
    });
  });

  describe('nodes', () => {
    const core = coreNodeTypes();

    it('lists one node set per node type, each a built .js with its .html beside it', () => {
      expect(nodeSets.length).to.be.greaterThan(0);
      for (const [, file] of nodeSets) {
        expect(existsSync(path.join(ROOT, file)), file).to.equal(true);
        expect(existsSync(path.join(ROOT, file.replace(/\.js$/, '.html'))), file.replace(/\.js$/, '.html')).to.equal(true);
      }
    });

    for (const [type, file] of nodeSets) {
      describe(type, () => {
        const html = (): string => readFileSync(path.join(ROOT, file.replace(/\.js$/, '.html')), 'utf8');

        it('registers itself in the editor with literal category, color, inputs, outputs and icon', () => {
          const def = editorDefinitions(html()).get(type);
          expect(def, `RED.nodes.registerType("${type}", {...}) in the editor file`).to.not.equal(undefined);
          const category = property(def as ts.ObjectLiteralExpression, 'category');
          expect(category && ts.isStringLiteral(category), 'category is a string literal').to.equal(true);
          for (const key of ['color', 'inputs', 'outputs', 'icon']) {
            const v = property(def as ts.ObjectLiteralExpression, key);
            if (v) expect(isLiteral(v), `${key} is a literal`).to.equal(true);
          }
          if ((category as ts.StringLiteral).text !== 'config') expect(property(def as ts.ObjectLiteralExpression, 'color'), 'color').to.not.equal(undefined);
          for (const key of ['defaults', 'credentials']) {
            const v = property(def as ts.ObjectLiteralExpression, key);
            if (v) expect(ts.isObjectLiteralExpression(v), `${key} is an object literal`).to.equal(true);
          }
        });

        it('has help, opening with a summary and the style guide sections', () => {
          const help = /<script type="text\/(?:html|markdown|x-red)" data-help-name="([^"]+)">([\s\S]*?)<\/script>/.exec(html());
          const inLocale = path.join(ROOT, path.dirname(file), 'locales', 'en-US', `${type}.html`);
          const text = help && help[1] === type ? (help[2] as string) : existsSync(inLocale) ? readFileSync(inLocale, 'utf8') : '';
          expect(text.trim(), 'help text').to.match(/^<p>[\s\S]{20,}?<\/p>/);
          for (const section of ['Inputs', 'Outputs', 'Details']) expect(text, section).to.include(`<h3>${section}</h3>`);
        });

        it('clashes with no core node type', () => {
          expect(core.has('inject') && core.has('mqtt-broker'), 'the core node list was read').to.equal(true);
          expect(core.has(type), `${type} is a core node type`).to.equal(false);
        });
      });
    }
  });

  describe('examples', () => {
    const dir = path.join(ROOT, 'examples');

    it('N02: every non-config node appears in an example; examples/ holds only flow JSON files', () => {
      const files = exampleFiles(dir);
      expect(files.length).to.be.greaterThan(0);
      const used = new Set<string>();
      for (const f of files) {
        expect(f, 'only .json files in examples/ (node-red-dev parses each one)').to.match(/\.json$/);
        const flow = JSON.parse(readFileSync(f, 'utf8')) as Array<{ type: string }>;
        expect(flow, path.basename(f)).to.be.an('array');
        for (const n of flow) used.add(n.type);
      }
      for (const [type, file] of nodeSets) {
        const def = editorDefinitions(readFileSync(path.join(ROOT, file.replace(/\.js$/, '.html')), 'utf8')).get(type);
        const category = def && property(def, 'category');
        if (category && ts.isStringLiteral(category) && category.text === 'config') continue;
        expect(used.has(type), `${type} in an example`).to.equal(true);
      }
    });
  });

  describe('documentation', () => {
    const docs = [
      'README.md',
      ...readdirSync(path.join(ROOT, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => `docs/${f}`),
    ];

    it('has the install guide and the ThingsBoard compatibility table', () => {
      expect(docs).to.include.members(['docs/install.md', 'docs/thingsboard-compatibility.md']);
      const table = readFileSync(path.join(ROOT, 'docs', 'thingsboard-compatibility.md'), 'utf8');
      for (const section of ['## The same as ThingsBoard', '## Different on purpose', '## Not supported']) expect(table).to.include(section);
    });

    it('links only to files inside the repository (README and docs/)', () => {
      for (const doc of docs) {
        const text = readFileSync(path.join(ROOT, doc), 'utf8');
        expect(text, `${doc} names a path outside the repository`).to.not.match(/\.\.\/shared|`\.\.\//);
        for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
          const target = (m[1] as string).split('#')[0] as string;
          if (target === '' || /^https?:\/\//.test(target)) continue;
          const resolved = path.resolve(ROOT, path.dirname(doc), target);
          expect(resolved.startsWith(ROOT + path.sep), `${doc}: ${target} leaves the repository`).to.equal(true);
          expect(existsSync(resolved), `${doc}: ${target} exists`).to.equal(true);
        }
      }
    });
  });

  describe('what npm publishes', () => {
    let files: string[];
    before(function () {
      this.timeout(60_000);
      const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
      files = (JSON.parse(out) as Array<{ files: Array<{ path: string }> }>)[0]?.files.map((f) => f.path) ?? [];
    });

    it('ships every node set with its editor file, locales and icons', () => {
      for (const [type, file] of nodeSets) {
        expect(files).to.include.members([file, file.replace(/\.js$/, '.html')]);
        expect(files, `${type} locale`).to.include(path.posix.join(path.posix.dirname(file), 'locales', 'en-US', `${type}.json`));
      }
      expect(files.some((f) => f.startsWith('dist/nodes/icons/'))).to.equal(true);
    });

    it('ships the engine, the dashboard, the examples and both commands', () => {
      expect(files).to.include.members(['LICENSE', 'README.md', 'package.json', 'dist/server/index.js', 'dashboard/index.html', ...Object.values(pkg.bin ?? {})]);
      expect(files.filter((f) => f.startsWith('examples/')).length).to.equal(exampleFiles(path.join(ROOT, 'examples')).length);
    });

    it('ships no tests, benchmarks, sources or source maps', () => {
      const unwanted = files.filter((f) => /^(dist\/(test|bench)\/|test\/|bench\/|server\/|nodes\/|flows\/|node_modules\/)|\.ts$|\.map$/.test(f));
      expect(unwanted).to.deep.equal([]);
    });
  });
});
