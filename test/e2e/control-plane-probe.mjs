/**
 * What a local user can reach of a running `protoctl up`: run by
 * control-plane.int.test.ts as a throwaway non-root user (setpriv), and as
 * root with the admin credential as the positive control. Prints one JSON
 * object: per file the read's outcome, per endpoint the call's outcome.
 *
 *   node control-plane-probe.mjs '{"files":[…],"etcdPort":N,"controllerPort":N,"agentPort":N,
 *                                  "caPem":"…","cert":{"certPem","keyPem"}?}'
 */
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ChannelCredentials, credentials as grpcCredentials } from "@grpc/grpc-js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const { ControlServiceClient } = await import(join(root, "dist/proto/gen/protoctl/v1/control.js"));
const { AgentServiceClient } = await import(join(root, "dist/proto/gen/protoctl/v1/agent.js"));

const args = JSON.parse(process.argv[2]);
const out = { uid: process.getuid(), files: {}, etcd: {}, controller: {}, agent: {} };

for (const f of args.files) {
  try {
    readFileSync(f);
    out.files[f] = "read";
  } catch (err) {
    out.files[f] = err.code;
  }
}

function http(req, opts) {
  return new Promise((resolve) => {
    const r = req({ host: "127.0.0.1", timeout: 3000, ...opts }, (res) => {
      let body = "";
      res.on("data", (b) => {
        body += b;
      });
      res.on("end", () => resolve(`status ${res.statusCode}: ${body.slice(0, 200)}`));
    });
    r.once("timeout", () => r.destroy(new Error("timeout")));
    r.once("error", (err) => resolve(`error ${err.code ?? err.message}`));
    r.end(opts.body);
  });
}

// cluster/id under the prefix every `up` uses, base64 for etcd's JSON gateway
const rangeBody = JSON.stringify({
  key: Buffer.from("/protoctl/v1/").toString("base64"),
  range_end: Buffer.from("/protoctl/v10").toString("base64"),
});
out.etcd.plaintext = await http(httpRequest, {
  port: args.etcdPort,
  method: "POST",
  path: "/v3/kv/range",
  body: rangeBody,
});
out.etcd.tlsNoClientCert = await http(httpsRequest, {
  port: args.etcdPort,
  method: "POST",
  path: "/v3/kv/range",
  body: rangeBody,
  rejectUnauthorized: false,
});

function unary(client, method, req) {
  return new Promise((resolve) => {
    client[method](req, { deadline: Date.now() + 5000 }, (err) =>
      resolve(err ? `code ${err.code}: ${err.details}` : "ok"),
    );
  });
}

const tls = () =>
  ChannelCredentials.createSsl(
    Buffer.from(args.caPem),
    args.cert ? Buffer.from(args.cert.keyPem) : null,
    args.cert ? Buffer.from(args.cert.certPem) : null,
    { checkServerIdentity: () => undefined },
  );
const insecure = () => grpcCredentials.createInsecure();

for (const [name, creds] of [
  ["plaintext", insecure],
  ["tls", tls],
]) {
  const c = new ControlServiceClient(`127.0.0.1:${args.controllerPort}`, creds());
  out.controller[name] = {
    listNodes: await unary(c, "listNodes", {}),
    createJoinToken: await unary(c, "createJoinToken", {
      ttlSeconds: 60,
      labels: {},
      uses: 1,
      reusable: false,
      node: "",
      replace: false,
    }),
  };
  c.close();
  const a = new AgentServiceClient(`127.0.0.1:${args.agentPort}`, creds());
  out.agent[name] = { getInfo: await unary(a, "getInfo", {}) };
  a.close();
}

process.stdout.write(`${JSON.stringify(out)}\n`);
