import type { PeerCertificate } from "node:tls";
import { describe, expect, it } from "vitest";
import { checkControllerCert } from "./server-role.js";

const cert = (ou: string | string[] | undefined, names: string) =>
  ({
    subject: { O: "protoctl", CN: "x", ...(ou ? { OU: ou } : {}) },
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
});
