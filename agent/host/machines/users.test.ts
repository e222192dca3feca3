import { describe, expect, it } from "vitest";
import { checkUserName, findUser, numericUser, parsePasswd } from "./users.js";

describe("exec users", () => {
  const passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\nbroken:x:zz\n\n";
  it("parses /etc/passwd and skips malformed lines", () => {
    expect(parsePasswd(passwd).map((e) => [e.name, e.uid, e.gid, e.home])).toEqual([
      ["root", 0, 0, "/root"],
      ["app", 1000, 1001, "/home/app"],
    ]);
  });
  it("accepts numeric uid[:gid]", () => {
    expect(numericUser("1000")).toEqual({ uid: 1000, gid: 1000 });
    expect(numericUser("1000:50")).toEqual({ uid: 1000, gid: 50 });
    expect(numericUser("app")).toBeUndefined();
  });
  it("rejects names that are not user names and reports unknown users", () => {
    expect(() => checkUserName("a b")).toThrow(/invalid user/);
    expect(() => checkUserName("../x")).toThrow(/invalid user/);
    expect(() => findUser(parsePasswd(passwd), "nobody", "e1")).toThrow(/does not exist/);
    expect(findUser(parsePasswd(passwd), "app", "e1").uid).toBe(1000);
  });
});
