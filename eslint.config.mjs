// Lint: typescript-eslint's recommended rules over the extension, backend, webview, tests and benches.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'test-output/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
      eqeqeq: ['error', 'smart'],
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
  {
    // jsonc-parser's parser recurses per nesting level: user text reaches it only through the modules that first
    // bound its size and depth (src/protocol/limits.ts).
    files: ['src/**/*.ts'],
    ignores: ['src/extension/config/tree.ts', 'src/extension/config/typing.ts', 'src/protocol/config.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: [{ name: 'jsonc-parser', importNames: ['parse', 'parseTree', 'visit', 'getLocation'], message: 'use configTree / configLocation (src/extension/config/tree.ts): they bound size and depth first' }] }],
    },
  },
  {
    files: ['esbuild.js'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', process: 'readonly', console: 'readonly', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
