import { describe, expect, it } from "vitest";
import { lineSplitter, runWithProgress } from "./progress-run.js";

describe("progress runner", () => {
  it("passes whole lines however the chunks fall, minus hidden ones", () => {
    const text = "one\nnoise here\ntwo\nlast";
    for (let size = 1; size <= text.length; size++) {
      const out: string[] = [];
      const s = lineSplitter(
        (t) => out.push(t),
        (l) => l.startsWith("noise"),
      );
      for (let i = 0; i < text.length; i += size) s.write(text.slice(i, i + size));
      expect(out.every((t) => t.endsWith("\n"))).toBe(true);
      s.flush();
      expect(out.join("")).toBe("one\ntwo\nlast");
    }
  });

  it("streams a real process's merged output, keeps its tail and exit code", async () => {
    const seen: string[] = [];
    const r = await runWithProgress(
      "/bin/sh",
      ["-c", 'echo "step 1"; echo "warn" >&2; cat; echo "No space left on device"; printf tail; exit 3'],
      { input: Buffer.from("from stdin\n"), onLines: (t) => seen.push(t), keepChars: 40 },
    );
    expect(r.exitCode).toBe(3);
    // stdout keeps its order; stderr's line comes through its own pipe, whole, somewhere
    const text = seen.join("");
    expect(text.replace("warn\n", "")).toBe("step 1\nfrom stdin\nNo space left on device\ntail");
    expect(text.split("\n")).toContain("warn");
    expect(r.output.length).toBeLessThanOrEqual(40);
    expect(r.output).toContain("No space left on device");
    expect(r.noSpace).toBe(true);
  });

  it("rejects with an AbortError when cancelled", async () => {
    const ac = new AbortController();
    const p = runWithProgress("/bin/sh", ["-c", "echo started; exec sleep 30"], {
      signal: ac.signal,
      onLines: () => ac.abort(),
    });
    await expect(p).rejects.toMatchObject({ name: "AbortError" });
  });
});
