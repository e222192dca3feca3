import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseMiniYaml, stringifyMiniYaml } from "./mini-yaml.js";

describe("mini yaml", () => {
  const doc = {
    "current-context": "local",
    contexts: {
      local: {
        controller: "127.0.0.1:7443",
        insecure: true,
        "ca-data": "-----BEGIN X-----\nabc\n-----END X-----\n",
      },
      "lab-2": { controller: "10.0.0.5:7443", insecure: false, ca: "/etc/pc/ca.pem" },
    },
  };

  it("round-trips what it writes, and the real parser agrees", () => {
    const text = stringifyMiniYaml(doc);
    expect(parseMiniYaml(text)).toEqual(doc);
    expect(parse(text)).toEqual(doc);
  });

  it("quotes strings that would read back as something else", () => {
    for (const s of ["true", "123", "", "a: b", "#x", "- y", "null", " lead", "x #y", "@a", "1.5"]) {
      const text = stringifyMiniYaml({ k: s });
      expect(parseMiniYaml(text)).toEqual({ k: s });
      expect(parse(text)).toEqual({ k: s });
    }
  });

  it("reads comments and blank lines", () => {
    expect(parseMiniYaml("# hi\n\na: 1 # one\nb:\n  c: x\n")).toEqual({ a: 1, b: { c: "x" } });
  });

  it("returns undefined for anything outside the subset", () => {
    for (const text of [
      "a: [1, 2]\n",
      "a: {b: 1}\n",
      "a: |\n  text\n",
      "- a\n- b\n",
      "a: &x 1\n",
      "a: 'single'\n",
      "a:\n\tb: 1\n",
      "a: 1\na: 2\n",
      'a: "bad \\q escape"\n',
      "a: 1\n   b: 2\n",
    ]) {
      expect(parseMiniYaml(text), text).toBeUndefined();
    }
  });

  it("an empty mapping value reads as null", () => {
    expect(parseMiniYaml("contexts:\n")).toEqual({ contexts: null });
  });
});
