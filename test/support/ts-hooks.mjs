/**
 * Node module hooks that run the TypeScript sources directly (child
 * processes in tests: controllers killed with SIGKILL need a real process).
 * Each .ts file is transpiled on load with TypeScript's transpileModule (no
 * type check), and "./x.js" imports resolve to "./x.ts" when only the .ts
 * exists, as TypeScript's NodeNext resolution does.
 *
 * Transpiled output is cached by content hash under node_modules/.cache, and
 * the TypeScript compiler is loaded only on a miss: loading it costs about
 * 0.4 s of CPU, and every worker thread (the agents' hydration copiers) runs
 * these hooks again. Six source-run agents starting their copy workers at
 * once used to spend seconds of both cores just loading the compiler.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const cacheDir = fileURLToPath(new URL("../../node_modules/.cache/protoctl-ts/", import.meta.url));
let ts;

export async function resolve(specifier, context, next) {
  if (
    (specifier.startsWith(".") || specifier.startsWith("/") || specifier.startsWith("file:")) &&
    specifier.endsWith(".js") &&
    context.parentURL
  ) {
    const url = new URL(specifier, context.parentURL);
    if (!existsSync(fileURLToPath(url))) {
      const tsUrl = new URL(url.href.replace(/\.js$/, ".ts"));
      if (existsSync(fileURLToPath(tsUrl))) return { url: tsUrl.href, shortCircuit: true, format: "module" };
    }
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (url.startsWith("file:") && url.endsWith(".ts")) {
    const source = readFileSync(fileURLToPath(url), "utf8");
    const key = createHash("sha256").update(url).update("\0").update(source).digest("hex");
    const cached = `${cacheDir}${key}.js`;
    if (existsSync(cached))
      return { format: "module", source: readFileSync(cached, "utf8"), shortCircuit: true };
    ts ??= (await import("typescript")).default;
    const out = ts.transpileModule(source, {
      fileName: fileURLToPath(url),
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        inlineSourceMap: true,
        esModuleInterop: true,
        verbatimModuleSyntax: false,
      },
    });
    // Written aside and renamed: a concurrent reader never sees half a file.
    mkdirSync(cacheDir, { recursive: true });
    const tmp = `${cached}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    writeFileSync(tmp, out.outputText);
    renameSync(tmp, cached);
    return { format: "module", source: out.outputText, shortCircuit: true };
  }
  return next(url, context);
}
