import { describe, expect, it } from "vitest";
import { nbdkitArgs, netnsPrefix, qemuNbdArgs, qemuOptValue, serverFor } from "./nbd-server.js";
import { formatNbdUri, parseNbdUri, validateExportName, withClientTls } from "./nbd-uri.js";
import { tlsDirEntries } from "./tls-dir.js";

const base = { image: "/s/demo.img", exportName: "demo@1", bindAddress: "10.0.0.1", stateDir: "/s" };

describe("nbdkitArgs", () => {
  it("serves the file read-only, capped, on one address, in the foreground", () => {
    expect(nbdkitArgs({ ...base, maxConnections: 8 }, 10809)).toEqual([
      "--foreground",
      "--readonly",
      "--ipaddr=10.0.0.1",
      "--port=10809",
      "--exportname=demo@1",
      "--filter=limit",
      "file",
      "file=/s/demo.img",
      "limit=8",
    ]);
  });
  it("requires TLS and verifies the client against the CA", () => {
    const args = nbdkitArgs({ ...base, image: "/s/a=b.img" }, 1, "/s/tls");
    expect(args).toEqual(
      expect.arrayContaining(["--tls=require", "--tls-certificates=/s/tls", "--tls-verify-peer"]),
    );
    expect(args.slice(-3)).toEqual(["file", "file=/s/a=b.img", "limit=16"]);
  });
  it("leaves DN allow-lists to qemu-nbd", () => {
    expect(serverFor({})).toBe("nbdkit");
    expect(serverFor({ allow: [] })).toBe("nbdkit");
    expect(serverFor({ allow: ["CN=n2"] })).toBe("qemu-nbd");
  });
});

describe("qemuNbdArgs", () => {
  it("serves read-only, persistent, capped, on one address", () => {
    expect(qemuNbdArgs({ ...base, maxConnections: 8 }, 10809)).toEqual([
      "--read-only",
      "--persistent",
      "--shared=8",
      "--format=raw",
      "--bind=10.0.0.1",
      "--port=10809",
      "--export-name=demo@1",
      "/s/demo.img",
    ]);
  });
  it("adds x509 credentials with peer verification and a DN allow-list", () => {
    const args = qemuNbdArgs({ ...base, allow: ["CN=n2", "CN=a,O=b"] }, 1, "/s/tls");
    expect(args).toContain("tls-creds-x509,id=tls0,dir=/s/tls,endpoint=server,verify-peer=on");
    expect(args).toContain("--tls-creds=tls0");
    expect(args).toContain(
      "authz-list,id=authz0,policy=deny,rules.0.match=CN=n2,rules.0.policy=allow,rules.1.match=CN=a,,O=b,rules.1.policy=allow",
    );
    expect(args.at(-1)).toBe("/s/demo.img");
  });
  it("escapes commas for qemu option strings", () => {
    expect(qemuOptValue("a,b")).toBe("a,,b");
  });
  it("enters only the network namespace", () => {
    expect(netnsPrefix("h1")).toEqual(["nsenter", "--net=/run/netns/h1", "--"]);
    expect(netnsPrefix(undefined)).toEqual([]);
  });
});

describe("nbd URIs", () => {
  it("formats and parses", () => {
    const u = { tls: true, host: "10.0.0.1", port: 10900, exportName: "demo@1" };
    expect(formatNbdUri(u)).toBe("nbds://10.0.0.1:10900/demo%401");
    expect(parseNbdUri(formatNbdUri(u))).toEqual(u);
    expect(parseNbdUri("nbd://[::1]:1/x?tls-certificates=/d")).toEqual({
      tls: false,
      host: "::1",
      port: 1,
      exportName: "x",
    });
    expect(parseNbdUri("nbd://h/")).toMatchObject({ port: 10809, exportName: "" });
    expect(() => parseNbdUri("http://h/x")).toThrow(/not an nbd/);
  });
  it("adds the client certificate directory to nbds:// only", () => {
    expect(withClientTls("nbds://h:1/x", "/d")).toBe("nbds://h:1/x?tls-certificates=/d");
    expect(withClientTls("nbd://h:1/x", "/d")).toBe("nbd://h:1/x");
    expect(() => withClientTls("nbds://h:1/x", "/a b")).toThrow();
  });
  it("keeps export names boring", () => {
    expect(() => validateExportName("debian@3")).not.toThrow();
    expect(() => validateExportName("a,b")).toThrow();
    expect(() => validateExportName("")).toThrow();
  });
  it("names TLS files the way qemu and libnbd look for them", () => {
    const files = { caFile: "/c/ca.pem", certFile: "/c/n.pem", keyFile: "/c/n.key" };
    expect(tlsDirEntries(files, "client").map(([n]) => n)).toEqual([
      "ca-cert.pem",
      "client-cert.pem",
      "client-key.pem",
    ]);
    expect(tlsDirEntries(files, "server")[1]).toEqual(["server-cert.pem", "/c/n.pem"]);
  });
});
