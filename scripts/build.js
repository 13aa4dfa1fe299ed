#!/usr/bin/env node
// Build: compile TypeScript, then put each node's editor HTML, locales and icons beside its
// compiled .js (Node-RED looks for them there), and copy flows/ into examples/ (the only folder
// Node-RED reads examples from). Little machinery on purpose: tsc and a copy step.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');

// `--clean` starts from an empty dist/ (CI clones fresh anyway); without it tsc overwrites in place.
if (process.argv.includes('--clean')) fs.rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });

const nodesSrc = path.join(root, 'nodes');
const nodesDist = path.join(dist, 'nodes');
for (const entry of fs.readdirSync(nodesSrc, { withFileTypes: true })) {
  const from = path.join(nodesSrc, entry.name);
  if (entry.isDirectory()) fs.cpSync(from, path.join(nodesDist, entry.name), { recursive: true });
  else if (entry.name.endsWith('.html')) fs.copyFileSync(from, path.join(nodesDist, entry.name));
}

const examples = path.join(root, 'examples');
fs.rmSync(examples, { recursive: true, force: true });
fs.cpSync(path.join(root, 'flows'), examples, { recursive: true, filter: (src) => fs.statSync(src).isDirectory() || src.endsWith('.json') });
