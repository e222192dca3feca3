/**
 * Value encodings for etcd. API messages are stored as their canonical proto3
 * JSON (ts-proto's toJSON/fromJSON); internal records as plain JSON.
 *
 * Why JSON and not protobuf bytes: an operator can read and fix the cluster
 * state with `etcdctl get --prefix /protoctl/v1/`; proto3 JSON keeps the
 * API's field names, omits defaults, and ignores unknown fields on read, so
 * additive schema changes stay compatible both ways (an older controller
 * reading a newer record, and the reverse). Encoding cost is small next to an
 * etcd round trip (measured in bench/schedule).
 */

/** The slice of ts-proto's MessageFns a codec needs. */
export interface JsonMessageFns<T> {
  toJSON(message: T): unknown;
  fromJSON(object: unknown): T;
}

export interface Codec<T> {
  encode(value: T): Buffer;
  decode(raw: Buffer): T;
}

export function protoJson<T>(fns: JsonMessageFns<T>): Codec<T> {
  return {
    encode: (v) => Buffer.from(JSON.stringify(fns.toJSON(v))),
    decode: (raw) => fns.fromJSON(JSON.parse(raw.toString("utf8"))),
  };
}

export function plainJson<T>(): Codec<T> {
  return {
    encode: (v) => Buffer.from(JSON.stringify(v)),
    decode: (raw) => JSON.parse(raw.toString("utf8")) as T,
  };
}
