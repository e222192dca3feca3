import { describe, expect, it } from "vitest";
import { parseConfig, parseDockerManifest, parseManifest, pickManifest } from "./image-config.js";

const D = (n: string) => `sha256:${n.repeat(64)}`;

describe("image config", () => {
  it("reads the run defaults and diff ids", () => {
    const c = parseConfig({
      config: { Env: ["PATH=/bin", "A=b=c", "EMPTY"], WorkingDir: "/srv", User: "app", Cmd: ["run"] },
      rootfs: { diff_ids: [D("a")] },
    });
    expect(c.image).toEqual({
      env: { PATH: "/bin", A: "b=c", EMPTY: "" },
      workingDir: "/srv",
      user: "app",
      entrypoint: [],
      cmd: ["run"],
    });
    expect(c.diffIds).toEqual([D("a")]);
    expect(parseConfig({}).image.cmd).toEqual([]);
  });

  it("refuses wrong types, bad names, a relative WorkingDir and bad digests", () => {
    expect(() => parseConfig({ config: { Cmd: "sh" } })).toThrow(/Cmd/);
    expect(() => parseConfig({ config: { Env: ["1A=x"] } })).toThrow(/variable name/);
    expect(() => parseConfig({ config: { WorkingDir: "srv" } })).toThrow(/absolute/);
    expect(() => parseConfig({ rootfs: { diff_ids: ["md5:x"] } })).toThrow(/diff_ids/);
    expect(() => parseManifest({ config: { digest: "sha256:zz" }, layers: [] })).toThrow(/digest/);
  });

  it("picks the only manifest, else the linux one for this architecture", () => {
    const m = (arch?: string) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: D(arch === "arm64" ? "b" : "a"),
      size: 10,
      ...(arch ? { platform: { os: "linux", architecture: arch } } : {}),
    });
    expect(pickManifest({ manifests: [m("arm64")] }, "amd64").digest).toBe(D("b"));
    expect(pickManifest({ manifests: [m("amd64"), m("arm64")] }, "arm64").digest).toBe(D("b"));
    expect(() => pickManifest({ manifests: [m("amd64"), m("arm64")] }, "s390x")).toThrow(/0 of them/);
    expect(() => pickManifest({ manifests: [] })).toThrow(/no manifest/);
  });

  it("reads docker save's manifest.json (one image only)", () => {
    expect(parseDockerManifest([{ Config: "c.json", Layers: ["l/layer.tar"] }])).toEqual({
      config: "c.json",
      layers: ["l/layer.tar"],
    });
    expect(() => parseDockerManifest([{ Config: "a" }, { Config: "b" }])).toThrow(/2 images/);
  });
});
