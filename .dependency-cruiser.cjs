/**
 * The layering, checked (issue 18 item 7): `npm run -s deps`, a step of .ci/run.
 * Top-level folders depend one way: common ← cli, controller, agent ← test,
 * bench (proto/gen is leaf code anyone may use). Inside the agent:
 * server (gRPC adapters) → service (use cases) → host (drivers), never back.
 * Test scaffolding lives in test/; only tests and benches import it. The rule
 * "no cycle between top-level folders" runs on shipped code alone (a test beside
 * agent code importing test/support, which imports the agent, is no design
 * cycle): .dependency-cruiser.product.cjs.
 */
/** Test code: the test folder, test files, and the old in-product scaffolding names. */
const TEST_CODE = "(^test/|\\.test\\.ts$|(^|/)test-support\\.ts$|\\.test-support\\.ts$|(^|/)testing/)";
const TEST_USERS = "(^test/|^bench/|\\.test\\.ts$|\\.test-support\\.ts$|^vitest\\.config\\.ts$)";
/** Layering binds shipped code; tests beside it may reach across to set up what they test. */
const PRODUCT = { pathNot: TEST_USERS };

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "common-imports-no-component",
      comment: "common/ is shared by every process: it knows none of them.",
      severity: "error",
      from: { ...PRODUCT, path: "^common/" },
      to: { path: "^(agent|cli|controller|test|bench)/" },
    },
    {
      name: "cli-imports-no-daemon",
      comment: "The CLI talks to the controller over gRPC only (the daemons' entry points load lazily).",
      severity: "error",
      from: { ...PRODUCT, path: "^cli/" },
      to: { path: "^(controller|agent)/" },
    },
    {
      name: "controller-imports-no-agent-or-cli",
      comment: "The controller reaches agents over gRPC and knows nothing of the CLI.",
      severity: "error",
      from: { ...PRODUCT, path: "^controller/" },
      to: { path: "^(agent|cli)/" },
    },
    {
      name: "proto-imports-nothing-of-ours",
      comment: "Generated code is the bottom layer.",
      severity: "error",
      from: { path: "^proto/" },
      to: { path: "^(agent|cli|common|controller|test|bench)/" },
    },
    {
      name: "agent-imports-no-controller-or-cli",
      severity: "error",
      from: { ...PRODUCT, path: "^agent/" },
      to: { path: "^(controller|cli)/" },
    },
    {
      name: "agent-host-not-upward",
      comment: "Host drivers know nothing of the services or gRPC adapters above them.",
      severity: "error",
      from: { ...PRODUCT, path: "^agent/host/" },
      to: { path: "^agent/(server|service)/" },
    },
    {
      name: "agent-service-not-upward",
      comment: "Use cases know nothing of the gRPC adapters (server/) that call them.",
      severity: "error",
      from: { ...PRODUCT, path: "^agent/service/" },
      to: { path: "^agent/server/" },
    },
    {
      name: "agent-server-reaches-host-through-services",
      comment: "gRPC adapters call use cases (service/), not drivers; types (import type) may be shared.",
      severity: "error",
      from: { ...PRODUCT, path: "^agent/server/" },
      to: { path: "^agent/host/", dependencyTypesNot: ["type-only"] },
    },
    {
      name: "no-test-code-in-product",
      comment: "Only tests and benches import test scaffolding: dist/ ships without it.",
      severity: "error",
      from: { pathNot: TEST_USERS },
      to: { path: TEST_CODE },
    },
    {
      name: "no-unresolvable",
      comment: "An import that resolves to nothing (a moved file, a typo).",
      severity: "error",
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // The no-cycle rule between top-level folders: .dependency-cruiser.product.cjs
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)(node_modules|dist|dist-bench|coverage)/" },
    // Type-only imports count: a cycle through types is still a cycle in the design.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      extensions: [".ts", ".mts", ".mjs", ".js", ".d.ts", ".d.mts", ".json"],
    },
    skipAnalysisNotInRules: true,
  },
};
