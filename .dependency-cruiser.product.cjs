/**
 * The graph of shipped code with each top-level folder collapsed to one node:
 * the same cruise as .dependency-cruiser.cjs without tests, test/ and bench/
 * (a test beside agent code that imports test/support, which imports the
 * agent, is no design cycle). dependency-cruiser does not look for cycles
 * after collapsing, so .ci/folder-cycles.mjs reads this graph (JSON) and
 * fails on any cycle between the folders: `npm run -s deps`.
 */
const base = require("./.dependency-cruiser.cjs");

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [],
  options: {
    ...base.options,
    collapse: "^[^/]+/",
    exclude: { path: "(^|/)(node_modules|dist|dist-bench|coverage)/|^(test|bench)/|\\.test\\.ts$" },
  },
};
