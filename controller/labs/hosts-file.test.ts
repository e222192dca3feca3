import { expect, it } from "vitest";
import { hostsFileText } from "./hosts-file.js";

it("lists localhost, the machine, then the lab entries in order", () => {
  expect(hostsFileText("web-1", { "web-1": "10.0.0.2", db: "10.0.0.3", "db.back": "10.0.0.3" })).toBe(
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tweb-1\n" +
      "10.0.0.2\tweb-1\n10.0.0.3\tdb\n10.0.0.3\tdb.back\n",
  );
});
