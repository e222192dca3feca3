/**
 * Exec as another user: `user` is a name from the env's /etc/passwd or
 * numeric `uid[:gid]`. Names are looked up by reading /etc/passwd *inside*
 * the env (an exec of `cat`): read from the host side, a symlink planted in
 * the env could point the agent at a host file. Parsing is pure.
 */
import { invalidArgument, notFound } from "../../../common/errors.js";

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

const NAME = /^[a-z_][a-z0-9_.-]{0,31}\$?$/i;
const NUMERIC = /^(\d{1,10})(?::(\d{1,10}))?$/;

/** `name:x:uid:gid:gecos:home:shell` lines → entries (malformed lines skipped). */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 7 || !f[0]) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || f[2] === "" || f[3] === "") continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? "/", shell: f[6] ?? "" });
  }
  return out;
}

/** Numeric `uid[:gid]` (gid defaults to uid), or undefined when `user` is a name. */
export function numericUser(user: string): { uid: number; gid: number } | undefined {
  const m = NUMERIC.exec(user);
  if (!m) return undefined;
  const uid = Number(m[1]);
  const gid = m[2] === undefined ? uid : Number(m[2]);
  if (uid > 0xfffffffe || gid > 0xfffffffe) throw invalidArgument(`user id out of range: ${user}`);
  return { uid, gid };
}

export function checkUserName(user: string): void {
  if (!NAME.test(user)) {
    throw invalidArgument(`invalid user ${JSON.stringify(user)}: a user name or uid[:gid]`, {
      reason: "INVALID_USER",
    });
  }
}

export function findUser(entries: PasswdEntry[], name: string, env: string): PasswdEntry {
  const e = entries.find((x) => x.name === name);
  if (!e) {
    throw notFound(`user ${name} does not exist in env ${env}`, {
      reason: "USER_NOT_FOUND",
      subject: `env/${env}`,
      hint: "create it first (a layer, a startup command) or pass a numeric uid[:gid]",
    });
  }
  return e;
}
