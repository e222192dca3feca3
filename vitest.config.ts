import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Worker threads load their module with Node's own loader, not vitest's: the hooks the source-run
// agents use (.ts transpiled on load) let hydration's copy workers start from the sources here too.
const tsHooks = fileURLToPath(new URL("./test/support/register.mjs", import.meta.url));

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: [
            "{common,agent,controller,cli,proto,bench}/**/*.test.ts",
            "test/unit/**/*.test.ts",
            "test/leak/**/*.test.ts",
          ],
          exclude: ["**/*.int.test.ts", "**/node_modules/**", "dist/**"],
          testTimeout: 10_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["**/*.int.test.ts"],
          exclude: ["**/node_modules/**", "dist/**"],
          // Real mounts, loop devices, namespaces and machines: one file at a time keeps
          // them from fighting over the 2 cores and makes the leak check exact.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
          globalSetup: ["test/build-enter-setup.ts", "test/leak/global-setup.ts"],
          execArgv: ["--import", tsHooks],
        },
      },
    ],
  },
});
