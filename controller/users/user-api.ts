/**
 * AddUser / ListUsers / RemoveUser. A user is a name, a role and the serial
 * of the one certificate (OU "user", CN name) that speaks for it; the
 * caller's CLI made the key and sends only a CSR. RemoveUser deletes the
 * record and lists the serial in `revoked/` in one transaction: every
 * replica's IdentityDirectory refuses the certificate from then on.
 */
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "../../common/errors.js";
import { validateName } from "../../common/names.js";
import { certSerial, peerIdentity, signCsr } from "../../common/tls.js";
import type {
  AddUserRequest,
  RemoveUserRequest,
  User,
  UserCredential,
} from "../../proto/gen/protoctl/v1/control.js";
import type { ControllerContext } from "../context.js";
import { unary } from "../server/handlers.js";
import type { IdentityDirectory } from "./directory.js";
import { identityCodecs, isUserRole, revokeWrite, USER_ROLES } from "./records.js";

/** Default validity of a user certificate: a quarter, renewed by `user rm` + `user add`. */
export const USER_CERT_DAYS = 90;
export const MAX_USER_CERT_DAYS = 365;

type CallWithAuth = Parameters<typeof peerIdentity>[0];

export function userApi(ctx: ControllerContext, directory: IdentityDirectory) {
  const s = ctx.store;
  return {
    addUser: unary(async (req: AddUserRequest, call): Promise<UserCredential> => {
      const name = validateName("user", req.name);
      if (!isUserRole(req.role)) {
        throw invalidArgument(`unknown role ${JSON.stringify(req.role)}`, {
          reason: "INVALID_ROLE",
          hint: `one of ${USER_ROLES.join(", ")}`,
        });
      }
      const days = req.days || USER_CERT_DAYS;
      if (days < 1 || days > MAX_USER_CERT_DAYS) {
        throw invalidArgument(`validity must be 1..${MAX_USER_CERT_DAYS} days`, { reason: "INVALID_DAYS" });
      }
      if (!ctx.tls) {
        throw failedPrecondition("users need TLS: this controller runs --insecure", {
          reason: "TLS_REQUIRED",
        });
      }
      if (!req.csrPem) throw invalidArgument("AddUser needs a CSR", { reason: "CSR_REQUIRED" });
      const by = peerIdentity(call as CallWithAuth, ctx.tls.ca.certPem);
      const certPem = await signCsr(ctx.tls.ca, req.csrPem, { cn: name, role: "user", days });
      const now = Date.now();
      const user: User = {
        name,
        role: req.role,
        serial: certSerial(certPem),
        createdMs: now,
        expiresMs: now + days * 86_400_000,
        createdBy: by ? `${by.role}/${by.cn}` : "",
      };
      const key = s.keys.user(name);
      const r = await s.kv.commit({
        conditions: [{ key, modRevision: 0 }],
        writes: [{ op: "put", key, value: identityCodecs.user.encode(user) }],
      });
      if (!r.succeeded) {
        throw alreadyExists(`user ${name} already exists`, {
          reason: "USER_EXISTS",
          subject: `user/${name}`,
          hint: `remove it first (\`protoctl user rm ${name}\`) to issue a new credential`,
        });
      }
      directory.noteUser(user);
      await s.events.emit({
        kind: "user.added",
        subject: `user/${name}`,
        message: `user ${name} added with role ${user.role}, valid ${days} days`,
      });
      return { user, certPem, caPem: ctx.tls.ca.certPem };
    }),

    listUsers: unary(async () => {
      const r = await s.kv.list(s.keys.folder("users"), identityCodecs.user);
      return { users: r.items.map((i) => i.value) };
    }),

    removeUser: unary(async (req: RemoveUserRequest) => {
      const name = validateName("user", req.name);
      const key = s.keys.user(name);
      const cur = await s.kv.get(key, identityCodecs.user);
      if (!cur) {
        throw notFound(`user ${name} not found`, {
          reason: "USER_NOT_FOUND",
          subject: `user/${name}`,
          hint: "see `protoctl user ls`",
        });
      }
      const serial = cur.value.serial;
      await s.kv.commit({
        conditions: [],
        writes: [{ op: "delete", key }, revokeWrite(s, serial, `user/${name}`)],
      });
      directory.noteRevoked(serial, name);
      await s.events.emit({
        kind: "user.removed",
        subject: `user/${name}`,
        message: `user ${name} removed; certificate ${serial} revoked`,
      });
      return {};
    }),
  };
}
