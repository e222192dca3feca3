import type { PeerCertificate } from "node:tls";
import { describe, expect, it } from "vitest";
import { checkControllerCert, controllerCertCheck } from "./server-role.js";

const cert = (ou: string | string[] | undefined, names: string, cn = "x") =>
  ({
    subject: { O: "protoctl", CN: cn, ...(ou ? { OU: ou } : {}) },
    subjectaltname: names,
  }) as unknown as PeerCertificate;

describe("the CLI's check of the controller's certificate", () => {
  it("accepts a controller certificate that names the host", () => {
    expect(
      checkControllerCert("protoctl-controller", cert("controller", "DNS:protoctl-controller")),
    ).toBeUndefined();
  });

  it("refuses a node's (or anyone else's) certificate that names the same host", () => {
    for (const ou of ["node", "admin", "user", undefined, ["controller", "node"]]) {
      expect(
        checkControllerCert("protoctl-controller", cert(ou, "DNS:protoctl-controller"))?.message,
      ).toMatch(/not controller/);
    }
  });

  it("still refuses a controller certificate for another host", () => {
    expect(checkControllerCert("10.0.0.9", cert("controller", "DNS:protoctl-controller"))).toBeInstanceOf(
      Error,
    );
  });

  it("with a context's server name, checks that name whatever host was dialled (no SNI is sent)", () => {
    const check = controllerCertCheck("protoctl-controller");
    expect(
      check("127.0.0.1", cert("controller", "DNS:protoctl-controller, IP Address:10.0.0.1")),
    ).toBeUndefined();
    expect(check("127.0.0.1", cert("controller", "DNS:Protoctl-Controller"))).toBeUndefined();
    expect(check("127.0.0.1", cert("node", "DNS:protoctl-controller"))?.message).toMatch(/not controller/);
    // a certificate for another name is refused with Node's own reason
    expect(check("127.0.0.1", cert("controller", "DNS:other"))?.message).toMatch(/protoctl-controller/);
    expect(check("protoctl-controller", cert("controller", "DNS:other"))).toBeInstanceOf(Error);
  });

  it("follows Node's rules beyond an exact name: CN only without DNS names, IPs, wildcards", () => {
    expect(controllerCertCheck("ctl")("h", cert("controller", "", "ctl"))).toBeUndefined();
    // a DNS subjectAltName present: the CN no longer counts
    expect(controllerCertCheck("ctl")("h", cert("controller", "DNS:other", "ctl"))).toBeInstanceOf(Error);
    expect(controllerCertCheck("10.0.0.9")("h", cert("controller", "IP Address:10.0.0.9"))).toBeUndefined();
    expect(controllerCertCheck("10.0.0.9")("h", cert("controller", "DNS:10.0.0.9"))).toBeInstanceOf(Error);
    expect(
      controllerCertCheck("a.example.com")("h", cert("controller", "DNS:*.example.com")),
    ).toBeUndefined();
  });
});
