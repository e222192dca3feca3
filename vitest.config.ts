import { defineConfig } from "vitest/config";

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
          globalSetup: ["test/leak/global-setup.ts"],
        },
      },
    ],
  },
});
