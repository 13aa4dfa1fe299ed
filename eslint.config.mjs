// ESLint flat config: typescript-eslint's recommended rules for the TypeScript (engine, nodes,
// commands, simulator, tests, benchmarks), with the type-aware checks that catch what hurts a
// Node-RED runtime most: a promise nobody awaits or catches (an unhandled rejection stops
// Node-RED, conventions A6) and an async function where a callback is expected.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'examples/', 'node_modules/', 'data/', '.bench/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      // `_name` marks a parameter a signature needs but the body does not (Node-RED's close(removed, done)).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // A timer declared before the callbacks that clear it and set after them cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  // require() stays where a module is optional or must load late (node-red, mqtt in the simulator),
  // and in the CommonJS build script.
  { rules: { '@typescript-eslint/no-require-imports': 'off' } },
  { files: ['scripts/**/*.js'], languageOptions: { sourceType: 'commonjs', globals: globals.node } },
  { files: ['dashboard/js/**/*.js'], languageOptions: { sourceType: 'module', globals: globals.browser } },
  { files: ['*.mjs'], languageOptions: { globals: globals.node } },
);
