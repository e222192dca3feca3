/**
 * ClusterStore: the controller's typed repository over etcd. One Collection
 * per folder of the key layout (keys.ts), each with a codec; cross-object
 * writes go through Kv.commit / TxnBatcher with mod-revision conditions.
 */

import { readFileSync } from "node:fs";
import { ExponentialBackoff, fallback, handleType, handleWhen, noop, retry, wrap } from "cockatiel";
import { Etcd3, GRPCDeadlineExceededError, isRecoverableError } from "etcd3";
import { alreadyExists, Code, ProtoctlError } from "../../common/errors.js";
import { GRPC_BASE_OPTIONS } from "../../common/grpc.js";
import { noSuchObject, type ObjectKind } from "../../common/names.js";
import { NodeHeartbeat } from "../../proto/gen/protoctl/v1/control.js";
import {
  Attachment,
  Base,
  BaseVersion,
  EnvSpec,
  EnvStatus,
  Export,
  Lab,
  Layer,
  LayerSpec,
  Node,
  SeedImage,
} from "../../proto/gen/protoctl/v1/types.js";
import type { LabState } from "../labs/lab-state.js";
import { instrumentEtcdKv } from "../metrics/instrument.js";
import type { OperationRecord } from "../operations/record.js";
import { type Codec, plainJson, protoJson } from "./codec.js";
import { EventLog } from "./events.js";
import { type Folder, Keys } from "./keys.js";
import { type Condition, Kv, TxnBatcher, type Versioned, type WatchEvent, type Write } from "./kv.js";
import { WrittenValues } from "./written-values.js";

/** A join token as stored: only its hash is the key. */
export interface TokenRecord {
  createdMs: number;
  expiresMs: number;
  labels: Record<string, string>;
  /** Joins left; absent = reusable until it expires. */
  usesLeft?: number;
  /** Only a node of this name may join with it. */
  node?: string;
  /** With node: the join may take over an existing node of that name. */
  replace?: boolean;
  /** Names of the nodes it admitted (an insecure agent's restart re-joins with the same token). */
  admitted?: string[];
}

/** Value of a node's lease-bound liveness key. */
export interface AliveRecord {
  controller: string;
  sinceMs: number;
}

export interface LayerRecord {
  layer: Layer;
  spec: LayerSpec;
}

/**
 * What `lab-state/<lab>` holds: the state the last `lab up` planned (stable
 * addresses, VNIs, interface names, machine digests), the spec as applied,
 * and whether `lab down` is under way (the leader removes the networks once
 * every machine is gone, then deletes this key).
 */
export interface LabRecord {
  state: LabState;
  specYaml: string;
  createdMs: number;
  updatedMs: number;
  deleting?: boolean;
  message?: string;
  /** The leader deletes the whole lab at this time (ms since the epoch); absent: never. */
  expiresMs?: number;
  /** What the last `lab up` asked for that is not done yet, and per-machine /etc/hosts status (lab-rollout.ts). */
  rollout?: import("../labs/rollout.js").LabRollout;
}

const layerCodec: Codec<LayerRecord> = {
  encode: (v) =>
    Buffer.from(JSON.stringify({ layer: Layer.toJSON(v.layer), spec: LayerSpec.toJSON(v.spec) })),
  decode: (raw) => {
    const o = JSON.parse(raw.toString("utf8")) as { layer: unknown; spec: unknown };
    return { layer: Layer.fromJSON(o.layer), spec: LayerSpec.fromJSON(o.spec) };
  },
};

export const codecs = {
  node: protoJson(Node),
  inventory: protoJson(NodeHeartbeat),
  alive: plainJson<AliveRecord>(),
  token: plainJson<TokenRecord>(),
  base: protoJson(Base),
  baseVersion: protoJson(BaseVersion),
  layer: layerCodec,
  envSpec: protoJson(EnvSpec),
  envStatus: protoJson(EnvStatus),
  lab: protoJson(Lab),
  labState: plainJson<LabRecord>(),
  export: protoJson(Export),
  seed: protoJson(SeedImage),
  attachment: protoJson(Attachment),
  operation: plainJson<OperationRecord>(),
};

/** Typed access to one flat folder of the layout, keyed by object name. */
export class Collection<T> {
  /** What this process wrote, for an informer here to take instead of decoding (written-values.ts). */
  readonly written = new WrittenValues<T>();
  constructor(
    readonly kv: Kv,
    readonly keys: Keys,
    readonly folder: Folder,
    readonly codec: Codec<T>,
    readonly kind: ObjectKind,
    private readonly keyOf: (name: string) => string,
  ) {}

  key(name: string): string {
    return this.keyOf(name);
  }

  prefix(): string {
    return this.keys.folder(this.folder);
  }

  nameOf(key: string): string | undefined {
    return this.keys.nameOf(this.folder, key);
  }

  get(name: string): Promise<Versioned<T> | undefined> {
    return this.kv.get(this.key(name), this.codec);
  }

  async mustGet(name: string): Promise<Versioned<T>> {
    const v = await this.get(name);
    if (!v) {
      throw noSuchObject(this.kind, name);
    }
    return v;
  }

  list(): Promise<{ items: Versioned<T>[]; revision: number }> {
    return this.kv.list(this.prefix(), this.codec);
  }

  /** Creates the object; ALREADY_EXISTS when the name is taken. */
  async create(name: string, value: T, extra: Write[] = []): Promise<Versioned<T>> {
    const key = this.key(name);
    const r = await this.kv.commit({
      conditions: [{ key, modRevision: 0 }],
      writes: [{ op: "put", key, value: this.codec.encode(value) }, ...extra],
    });
    if (!r.succeeded) {
      throw alreadyExists(`${this.kind} ${name} already exists`, {
        reason: "NAME_IN_USE",
        subject: `${this.kind}/${name}`,
      });
    }
    return { key, value, modRevision: r.revision, createRevision: r.revision, lease: "0" };
  }

  async put(name: string, value: T, lease?: string): Promise<number> {
    const r = await this.kv.commit({
      conditions: [],
      writes: [{ op: "put", key: this.key(name), value: this.codec.encode(value), lease }],
    });
    return r.revision;
  }

  /** Read-modify-write with retry on conflict; fn returns undefined to leave the object as is. */
  update(name: string, fn: (cur: T | undefined) => T | undefined): Promise<Versioned<T> | undefined> {
    return this.kv.update(this.key(name), this.codec, fn);
  }

  /** Like update, but NOT_FOUND when the object does not exist. */
  async modify(name: string, fn: (cur: T) => T | undefined): Promise<Versioned<T>> {
    let missing = false;
    const r = await this.update(name, (cur) => {
      if (cur === undefined) {
        missing = true;
        return undefined;
      }
      return fn(cur);
    });
    if (missing || !r) return this.mustGet(name);
    return r;
  }

  async delete(name: string): Promise<boolean> {
    const res = await this.kv.client.kv.deleteRange({ key: Buffer.from(this.key(name)) });
    return Number(res.deleted) > 0;
  }

  watch(
    fromRevision: number | undefined,
    cb: (events: WatchEvent[], revision: number) => void,
    onError?: (err: Error) => void,
  ): Promise<() => Promise<void>> {
    return this.kv.watch(this.prefix(), fromRevision, cb, onError);
  }
}

export interface StoreOptions {
  endpoints: string[];
  /** PEM files for etcd client TLS (https:// endpoints); empty = none. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  prefix?: string;
  /** Id of the process writing events (controller id). */
  writer?: string;
  eventTtlSeconds?: number;
}

/**
 * How calls ride out an etcd restart. etcd3's default puts a circuit breaker
 * on each host (three failures open it for 5 s) under three retries: with one
 * member, a restart made every call in flight fail with cockatiel's "circuit
 * breaker is open", and calls kept failing for up to 5 s after etcd was back.
 * Here a failed call is retried on short backoff (25 ms doubling to 250 ms)
 * for about 8 s, so a call in flight waits out a restart and the first retry
 * after etcd's return goes through; past that, the caller gets UNAVAILABLE
 * (ProtoctlError.from names the store).
 */
export const STORE_FAULT_HANDLING = {
  host: () => noop,
  global: wrap(
    fallback(handleType(GRPCDeadlineExceededError), () => {
      throw storeUnanswered();
    }),
    // etcd3 counts a passed deadline as recoverable: retried, a quorum-less write would wait 36 times
    retry(
      handleWhen((e) => isRecoverableError(e) && !(e instanceof GRPCDeadlineExceededError)),
      {
        maxAttempts: 36,
        backoff: new ExponentialBackoff({ initialDelay: 25, maxDelay: 250 }),
      },
    ),
  ),
};

/**
 * How long one unary etcd call may take. A member that lost its quorum
 * neither answers nor refuses a write (it waits for a leader that does not
 * come): without a deadline the call, and the API call behind it, would hang
 * past its own deadline; with one it fails UNAVAILABLE, saying why.
 */
export const STORE_CALL_DEADLINE_MS = 5000;

function storeUnanswered(): ProtoctlError {
  return new ProtoctlError(
    Code.UNAVAILABLE,
    `the cluster store (etcd) did not answer within ${STORE_CALL_DEADLINE_MS / 1000} s: too few of its members may be running (quorum lost)`,
    {
      reason: "STORE_UNAVAILABLE",
      hint: "check that most etcd members run (protoctl doctor, their logs), then run the command again",
    },
  );
}

export class ClusterStore {
  readonly client: Etcd3;
  readonly keys: Keys;
  readonly kv: Kv;
  readonly batcher: TxnBatcher;
  readonly events: EventLog;
  readonly nodes: Collection<Node>;
  readonly inventory: Collection<NodeHeartbeat>;
  readonly alive: Collection<AliveRecord>;
  readonly bases: Collection<Base>;
  readonly layers: Collection<LayerRecord>;
  readonly envSpecs: Collection<EnvSpec>;
  readonly envStatus: Collection<EnvStatus>;
  readonly labs: Collection<Lab>;
  readonly labStates: Collection<LabRecord>;
  readonly operations: Collection<OperationRecord>;

  constructor(opts: StoreOptions) {
    this.client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: 3000,
      credentials: etcdCredentials(opts.tls),
      grpcOptions: { ...GRPC_BASE_OPTIONS },
      faultHandling: STORE_FAULT_HANDLING,
      // unary calls only: watches and lease keep-alives are streams that live on
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + STORE_CALL_DEADLINE_MS }),
    });
    instrumentEtcdKv(this.client.kv);
    this.keys = new Keys(opts.prefix);
    this.kv = new Kv(this.client);
    this.batcher = new TxnBatcher(this.kv);
    this.events = new EventLog(this.batcher, this.keys, opts.writer ?? "controller", opts.eventTtlSeconds);
    const k = this.keys;
    const c = <T>(folder: Folder, codec: Codec<T>, kind: ObjectKind, keyOf: (n: string) => string) =>
      new Collection<T>(this.kv, k, folder, codec, kind, keyOf);
    this.nodes = c("nodes", codecs.node, "node", (n) => k.node(n));
    this.inventory = c("nodeInventory", codecs.inventory, "node", (n) => k.nodeInventory(n));
    this.alive = c("nodeAlive", codecs.alive, "node", (n) => k.nodeAlive(n));
    this.bases = c("bases", codecs.base, "base", (n) => k.base(n));
    this.layers = c("layers", codecs.layer, "layer", (n) => k.layer(n));
    this.envSpecs = c("envSpecs", codecs.envSpec, "env", (n) => k.envSpec(n));
    this.envStatus = c("envStatus", codecs.envStatus, "env", (n) => k.envStatus(n));
    this.labs = c("labs", codecs.lab, "lab", (n) => k.lab(n));
    this.labStates = c("labState", codecs.labState, "lab", (n) => k.labState(n));
    this.operations = c("operations", codecs.operation, "operation", (n) => k.operation(n));
  }

  // ---- tokens (keyed by hash) ----

  async putToken(hashHex: string, rec: TokenRecord, ttlSeconds: number): Promise<void> {
    const lease = this.client.lease(Math.max(1, ttlSeconds), { autoKeepAlive: false });
    const id = await lease.grant();
    await this.kv.commit({
      conditions: [],
      writes: [{ op: "put", key: this.keys.token(hashHex), value: codecs.token.encode(rec), lease: id }],
    });
    lease.release();
  }

  async getToken(hashHex: string): Promise<TokenRecord | undefined> {
    return (await this.kv.get(this.keys.token(hashHex), codecs.token))?.value;
  }

  /** The token with its mod revision and lease, for a conditional update (use counting). */
  getTokenVersioned(hashHex: string): Promise<Versioned<TokenRecord> | undefined> {
    return this.kv.get(this.keys.token(hashHex), codecs.token);
  }

  // ---- base versions ----

  async listBaseVersions(base?: string): Promise<Versioned<BaseVersion>[]> {
    const prefix = base ? this.keys.baseVersionsOf(base) : this.keys.folder("baseVersions");
    return (await this.kv.list(prefix, codecs.baseVersion)).items;
  }

  getBaseVersion(base: string, version: number): Promise<Versioned<BaseVersion> | undefined> {
    return this.kv.get(this.keys.baseVersion(base, version), codecs.baseVersion);
  }

  /**
   * Records the seal of a base version: the result of the controller's own
   * build/import/update/snapshot request on `origin` (never a heartbeat),
   * and bumps the base's `latest`, both under conditions so two writers
   * agree. The first seal of base@N wins; resolves with the one on record.
   */
  async recordBaseVersion(bv: BaseVersion, origin: string): Promise<BaseVersion> {
    const stored: BaseVersion = {
      ...bv,
      nodes: [],
      users: [],
      origin,
      sealedMs: Date.now(),
      // bound by the origin's first seed publish (propagation/push.ts)
      checksum: "",
      holders: [],
      foreign: false,
      foreignNodes: [],
    };
    const r = await this.kv.update(this.keys.baseVersion(bv.base, bv.version), codecs.baseVersion, (cur) =>
      cur ? undefined : stored,
    );
    await this.bases.update(bv.base, (cur) => {
      if (cur && cur.latest >= bv.version) return undefined;
      return { name: bv.base, versions: [], latest: bv.version };
    });
    return r?.value ?? stored;
  }

  /** Changes a recorded seal (holders, checksum); NOT_FOUND-free: resolves undefined when there is none. */
  async updateSeal(
    base: string,
    version: number,
    fn: (cur: BaseVersion) => BaseVersion | undefined,
  ): Promise<BaseVersion | undefined> {
    let missing = false;
    const r = await this.kv.update(this.keys.baseVersion(base, version), codecs.baseVersion, (cur) => {
      if (!cur) {
        missing = true;
        return undefined;
      }
      return fn(cur);
    });
    if (missing) return undefined;
    return r?.value ?? (await this.getBaseVersion(base, version))?.value;
  }

  /**
   * Records a new env (its spec and first status together) if the name is
   * free: no spec and no status left by an env still being deleted. Batched
   * with other writes of the same tick. Resolves false when the name is taken (or a guard failed).
   */
  async createEnv(spec: EnvSpec, status: EnvStatus, guards: Condition[] = []): Promise<boolean> {
    const specKey = this.keys.envSpec(spec.name);
    const statusKey = this.keys.envStatus(spec.name);
    const r = await this.batcher.commit({
      conditions: [{ key: specKey, modRevision: 0 }, { key: statusKey, modRevision: 0 }, ...guards],
      writes: [
        { op: "put", key: specKey, value: codecs.envSpec.encode(spec) },
        { op: "put", key: statusKey, value: codecs.envStatus.encode(status) },
      ],
    });
    if (r.succeeded) {
      this.envSpecs.written.remember(specKey, spec, r.revision);
      this.envStatus.written.remember(statusKey, status, r.revision);
    }
    return r.succeeded;
  }

  async deleteBaseVersion(base: string, version: number): Promise<void> {
    await this.kv.commit({
      conditions: [],
      writes: [{ op: "delete", key: this.keys.baseVersion(base, version) }],
    });
  }

  // ---- exports and attachments (propagation; written by the push loop) ----

  listExports(): Promise<Versioned<Export>[]> {
    return this.kv.list(this.keys.folder("exports"), codecs.export).then((r) => r.items);
  }

  async putExport(e: Export): Promise<void> {
    await this.kv.commit({
      conditions: [],
      writes: [
        { op: "put", key: this.keys.export(e.base, e.version, e.node), value: codecs.export.encode(e) },
      ],
    });
  }

  listAttachments(): Promise<Versioned<Attachment>[]> {
    return this.kv.list(this.keys.folder("attachments"), codecs.attachment).then((r) => r.items);
  }

  async putAttachment(a: Attachment): Promise<void> {
    await this.kv.commit({
      conditions: [],
      writes: [
        {
          op: "put",
          key: this.keys.attachment(a.base, a.version, a.node),
          value: codecs.attachment.encode(a),
        },
      ],
    });
  }

  listSeeds(): Promise<Versioned<SeedImage>[]> {
    return this.kv.list(this.keys.folder("seeds"), codecs.seed).then((r) => r.items);
  }

  async putSeed(seed: SeedImage): Promise<void> {
    await this.kv.commit({
      conditions: [],
      writes: [{ op: "put", key: this.keys.seed(seed.base, seed.version), value: codecs.seed.encode(seed) }],
    });
  }

  /** Forgets base@N's seed and its exports (garbage collection), and its attachments too when asked. */
  async deleteSeed(base: string, version: number, attachments = false): Promise<void> {
    const writes: Write[] = [
      { op: "delete", key: this.keys.seed(base, version) },
      { op: "delete", key: `${this.keys.folder("exports")}${base}@${version}/`, prefix: true },
    ];
    if (attachments) {
      writes.push({
        op: "delete",
        key: `${this.keys.folder("attachments")}${base}@${version}/`,
        prefix: true,
      });
    }
    await this.kv.commit({ conditions: [], writes });
  }

  async deleteExport(base: string, version: number, node: string): Promise<void> {
    await this.kv.commit({
      conditions: [],
      writes: [{ op: "delete", key: this.keys.export(base, version, node) }],
    });
  }

  /** Deletes every key under the prefix (tests, `protoctl down --purge`). */
  async purge(): Promise<void> {
    await this.kv.commit({ conditions: [], writes: [{ op: "delete", key: this.keys.prefix, prefix: true }] });
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

function etcdCredentials(tls: StoreOptions["tls"]) {
  if (!tls?.caFile) return undefined;
  return {
    rootCertificate: readFileSync(tls.caFile),
    privateKey: tls.keyFile ? readFileSync(tls.keyFile) : undefined,
    certChain: tls.certFile ? readFileSync(tls.certFile) : undefined,
  };
}
