import { describe, expect, it } from "vitest";
import { parseLabSpec } from "../../controller/labs/parse-spec.js";
import { inlineFileSources } from "./inline-files.js";

const SPEC = `# shop lab
name: shop
machines:
  lb:
    base: deb
    files:
      - path: /etc/haproxy.cfg
        source: ./haproxy.cfg # keep me
        mode: "0600"
      - path: /etc/motd
        content: hello
`;

describe("inlineFileSources", () => {
  it("replaces each source with base64 content and keeps the rest", async () => {
    const asked: string[] = [];
    const out = await inlineFileSources(SPEC, async (p) => {
      asked.push(p);
      return new Uint8Array([0, 1, 2, 255]);
    });
    expect(asked).toEqual(["./haproxy.cfg"]);
    expect(out).toContain("# shop lab");
    expect(out).not.toContain("source:");
    const r = parseLabSpec(out);
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    expect(r.spec.machines[0]!.files).toEqual([
      { path: "/etc/haproxy.cfg", mode: 0o600, contentBase64: "AAEC/w==" },
      { path: "/etc/motd", mode: 0o644, contentBase64: Buffer.from("hello").toString("base64") },
    ]);
  });

  it("returns the text unchanged when there is nothing to inline", async () => {
    const text = "name: l\nmachines:\n  m: { base: b }\n";
    expect(await inlineFileSources(text, async () => new Uint8Array())).toBe(text);
  });

  it("names the line of a source it cannot read", async () => {
    const fail = async () => {
      throw Object.assign(new Error("ENOENT: no such file"), { code: "ENOENT" });
    };
    await expect(inlineFileSources(SPEC, fail, "shop.yaml")).rejects.toThrow(
      "shop.yaml:8:17: cannot read file source './haproxy.cfg': ENOENT: no such file",
    );
  });
});
