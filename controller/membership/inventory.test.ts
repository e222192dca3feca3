import { describe, expect, it } from "vitest";
import { NodeHeartbeat } from "../../proto/gen/protoctl/v1/control.js";
import type { BaseVersion, Node } from "../../proto/gen/protoctl/v1/types.js";
import { reportedVersion } from "../../test/support/controller/base-version.js";
import type { ControllerContext } from "../context.js";
import { type InventoryMemo, writeInventory } from "./inventory.js";

const bv = reportedVersion;

/** The slice of the store writeInventory uses, in memory, counting its etcd requests. */
function fakeCluster() {
  let rev = 1;
  const seals = new Map<string, { value: BaseVersion; modRevision: number }>();
  const inventory = new Map<string, NodeHeartbeat>();
  const nodes = new Map<string, Node>();
  const requests: string[] = [];
  const store = {
    listBaseVersions: async () => {
      requests.push("range seals");
      return [...seals].map(([ref, s]) => ({ key: `bv/${ref}`, ...s, createRevision: 0, lease: "0" }));
    },
    inventory: {
      put: async (name: string, v: NodeHeartbeat) => {
        requests.push("txn inventory");
        inventory.set(name, v);
        rev++;
      },
      update: async (name: string, fn: (cur: NodeHeartbeat | undefined) => NodeHeartbeat | undefined) => {
        requests.push("range inventory");
        const next = fn(inventory.get(name));
        if (next) {
          requests.push("txn inventory");
          inventory.set(name, next);
        }
      },
    },
    nodes: {
      update: async (name: string, fn: (cur: Node | undefined) => Node | undefined) => {
        requests.push("range node");
        const next = fn(nodes.get(name));
        if (next) {
          requests.push("txn node");
          nodes.set(name, next);
        }
      },
    },
  };
  const ctx = { store, log: { warn: () => undefined } } as unknown as ControllerContext;
  const seal = (ref: string, origin: string) =>
    seals.set(ref, { value: bv(ref, { origin }), modRevision: ++rev });
  nodes.set("n1", { name: "n1", address: "10.0.0.1:1", agentVersion: "1" } as Node);
  return { ctx, seal, seals, inventory, nodes, requests };
}

const beat = (address: string, bases: BaseVersion[]) =>
  NodeHeartbeat.fromPartial({ node: "n1", inventory: true, address, agentVersion: "1", bases });

describe("a node's inventory from its heartbeats", () => {
  it("a steady heartbeat costs its write and one seals read; a seal landing meanwhile is applied", async () => {
    const c = fakeCluster();
    c.seal("deb@1", "n1");
    const memo: InventoryMemo = {};
    const held = [bv("deb@1"), bv("deb@2")];
    await writeInventory(c.ctx, "n1", beat("10.0.0.1:1", held), memo);
    // first of a stream: seals read, node record checked, seals read again after the write
    expect(c.requests).toEqual(["range seals", "txn inventory", "range node", "range seals"]);
    expect(c.inventory.get("n1")?.foreignBases.map((b) => b.version)).toEqual([2]);

    c.requests.length = 0;
    await writeInventory(c.ctx, "n1", beat("10.0.0.1:1", held), memo);
    expect(c.requests).toEqual(["txn inventory", "range seals"]);

    // deb@2 sealed (origin n1) between two heartbeats: the next one classifies with the stale
    // seals it remembered, then its read after the write sees the seal and fixes the record
    c.seal("deb@2", "n1");
    c.requests.length = 0;
    await writeInventory(c.ctx, "n1", beat("10.0.0.1:1", held), memo);
    expect(c.requests).toEqual(["txn inventory", "range seals", "range inventory", "txn inventory"]);
    expect(c.inventory.get("n1")?.bases.map((b) => b.version)).toEqual([1, 2]);
    expect(c.inventory.get("n1")?.foreignBases).toEqual([]);

    // a seal deleted is a change too
    c.seals.delete("deb@1");
    c.requests.length = 0;
    await writeInventory(c.ctx, "n1", beat("10.0.0.1:1", held), memo);
    expect(c.requests).toEqual(["txn inventory", "range seals", "range inventory", "txn inventory"]);
    expect(c.inventory.get("n1")?.foreignBases.map((b) => b.version)).toEqual([1]);

    // a new address goes into the node record
    c.requests.length = 0;
    await writeInventory(c.ctx, "n1", beat("10.0.0.9:1", held), memo);
    expect(c.requests).toEqual(["txn inventory", "range node", "txn node", "range seals"]);
    expect(c.nodes.get("n1")?.address).toBe("10.0.0.9:1");
  });

  it("a version deleted here and its seal with it leaves no foreign copy behind", async () => {
    // base rm deb@2 right after its seal: the next inventory no longer shows it, and is classified
    // with the remembered seals, which still hold it; the grace for a fresh seal added it back as
    // this node's, and the read after the write turned that into a foreign copy the node never
    // reported (base ls showed it until another inventory)
    const c = fakeCluster();
    c.seals.set("deb@1", { value: bv("deb@1", { origin: "n1", sealedMs: Date.now() }), modRevision: 2 });
    c.seals.set("deb@2", { value: bv("deb@2", { origin: "n1", sealedMs: Date.now() }), modRevision: 3 });
    const memo: InventoryMemo = {};
    await writeInventory(c.ctx, "n1", beat("10.0.0.1:1", [bv("deb@1"), bv("deb@2")]), memo);
    expect(c.inventory.get("n1")?.bases.map((b) => b.version)).toEqual([1, 2]);
    c.seals.delete("deb@2");
    await writeInventory(c.ctx, "n1", beat("10.0.0.1:1", [bv("deb@1")]), memo);
    expect(c.inventory.get("n1")?.bases.map((b) => b.version)).toEqual([1]);
    expect(c.inventory.get("n1")?.foreignBases).toEqual([]);
    // a version the node does report without a seal is still foreign
    await writeInventory(c.ctx, "n1", beat("10.0.0.1:1", [bv("deb@1"), bv("deb@3")]), memo);
    expect(c.inventory.get("n1")?.foreignBases.map((b) => b.version)).toEqual([3]);
  });
});
