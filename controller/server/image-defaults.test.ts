import { describe, expect, it } from "vitest";
import { commandOfImage } from "./image-defaults.js";

describe("commandOfImage", () => {
  it("turns Entrypoint + Cmd into the env command; nothing without them", () => {
    const image = { env: { A: "1" }, workingDir: "/w", user: "", entrypoint: ["/e"], cmd: ["x"] };
    expect(commandOfImage(image)).toEqual({ argv: ["/e", "x"], workdir: "/w", user: "", env: { A: "1" } });
    expect(commandOfImage({ ...image, entrypoint: [], cmd: [] })).toBeUndefined();
    expect(commandOfImage(undefined)).toBeUndefined();
  });
});
