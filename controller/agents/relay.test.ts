import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import type { DeltaChunk } from "../../proto/gen/protoctl/v1/agent.js";
import { pipeChunks } from "./relay.js";

class Source extends EventEmitter {
  paused = 0;
  resumed = 0;
  pause() {
    this.paused++;
  }
  resume() {
    this.resumed++;
  }
}

class Sink extends EventEmitter {
  got: DeltaChunk[] = [];
  full = false;
  ended = false;
  cancelled = false;
  write(c: DeltaChunk) {
    this.got.push(c);
    return !this.full;
  }
  end() {
    this.ended = true;
  }
  cancel() {
    this.cancelled = true;
  }
}

const chunk = (s: string): DeltaChunk => ({ part: { $case: "data", data: Buffer.from(s) } });

describe("pipeChunks", () => {
  it("carries every chunk in order, pauses the source while the target is full, ends the target", () => {
    const up = new Source();
    const down = new Sink();
    const errors: Error[] = [];
    pipeChunks(up, down, (e) => errors.push(e));
    up.emit("data", chunk("a"));
    down.full = true;
    up.emit("data", chunk("b"));
    expect(up.paused).toBe(1);
    expect(up.resumed).toBe(0);
    down.full = false;
    down.emit("drain");
    expect(up.resumed).toBe(1);
    up.emit("data", chunk("c"));
    up.emit("end");
    expect(down.got.map((c) => (c.part?.$case === "data" ? c.part.data.toString() : ""))).toEqual([
      "a",
      "b",
      "c",
    ]);
    expect(down.ended).toBe(true);
    expect(errors).toEqual([]);
  });

  it("cancels the target call when the source fails, and reports the source's error", () => {
    const up = new Source();
    const down = new Sink();
    const errors: Error[] = [];
    pipeChunks(up, down, (e) => errors.push(e));
    up.emit("error", new Error("source died"));
    expect(down.cancelled).toBe(true);
    expect(down.ended).toBe(false);
    expect(errors.map((e) => e.message)).toEqual(["source died"]);
  });
});
