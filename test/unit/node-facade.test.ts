import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';

// Runs from dist/test/unit; the sources sit at the repository root.
const root = path.resolve(__dirname, '../../..');

describe('the engine facade', () => {
  it("is all the nodes import of the engine: '../server', types included", () => {
    const reaching: string[] = [];
    for (const file of fs.readdirSync(path.join(root, 'nodes')).filter((f) => f.endsWith('.ts'))) {
      const text = fs.readFileSync(path.join(root, 'nodes', file), 'utf8');
      for (const m of text.matchAll(/(?:from|import|require\()\s*'(\.\.\/[^']*)'/g)) {
        if (m[1] !== '../server') reaching.push(`nodes/${file} imports '${m[1]}'`);
      }
    }
    expect(reaching, 'export what a node needs from server/index.ts instead').to.deep.equal([]);
  });

  it('finds an import past the facade (the check itself can fail)', () => {
    const sample = "import type { Notification } from '../server/pipeline/notifier';";
    expect([...sample.matchAll(/(?:from|import|require\()\s*'(\.\.\/[^']*)'/g)].map((m) => m[1])).to.deep.equal(['../server/pipeline/notifier']);
  });
});
