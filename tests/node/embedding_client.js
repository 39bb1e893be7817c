#!/usr/bin/env node
// A tiny EmbeddingService client on @grpc/grpc-js + @grpc/proto-loader, used by
// tests/test_polyglot.py to prove that a non-Python client works from protos/ alone.
//
//   node embedding_client.js HOST:PORT METHOD [REQUEST_JSON]
//   node embedding_client.js 127.0.0.1:50051 Embed '{"inputs":["hi"]}'
//
// REQUEST_JSON uses the proto's field names (snake_case; lowerCamelCase is accepted
// too; map fields are not supported, the service has none) and the protobuf JSON
// mapping of the well-known types: a google.protobuf.Struct is a plain JSON object, a
// Timestamp an RFC 3339 string. The response is printed the same way on stdout
// (snake_case names, int64 as strings, fields at their defaults included). On a gRPC error it prints
// {"code": <num>, "details": "..."} and exits 1; on a usage error it exits 2.
//
// Install the dependencies first: npm ci --prefix tests/node
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');
const PROTO_FILE = 'embedpipe/embedding/v1/embedding_service.proto';
const SERVICE = 'embedpipe.embedding.v1.EmbeddingService';
const DEADLINE_MS = 60_000;

// keepCase: snake_case field names as in the .proto; longs as strings as in JSON.
// google/protobuf/struct.proto and timestamp.proto come with protobufjs (proto-loader
// resolves the well-known types itself), so only protos/ is on the include path.
const definition = protoLoader.loadSync(PROTO_FILE, {
  includeDirs: [PROTOS],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});

function usage(message) {
  process.stderr.write(`${message}\nusage: node embedding_client.js HOST:PORT METHOD [REQUEST_JSON]\n`);
  process.exit(2);
}

function messageType(typeName) {
  const name = typeName.replace(/^\./, '');
  const entry = definition[name];
  if (!entry || !entry.type) throw new Error(`unknown message type ${name}`);
  return { name, descriptor: entry.type };
}

// The full name of a field's message type: descriptors keep the name as written in the
// .proto (e.g. "Chunk"), so resolve it the protobuf way, innermost scope first.
function fieldType(scope, field) {
  if (field.typeName.startsWith('.')) return field.typeName.slice(1);
  const parts = scope.split('.');
  for (let i = parts.length; i >= 0; i -= 1) {
    const candidate = [...parts.slice(0, i), field.typeName].join('.');
    if (definition[candidate]) return candidate;
  }
  throw new Error(`cannot resolve ${field.typeName} from ${scope}`);
}

// The package definition's key of a method's request or response type (proto-loader
// builds a fresh object for those, so match by short name and descriptor contents).
function fullName(messageDefinition) {
  const shape = JSON.stringify(messageDefinition.type);
  const name = Object.keys(definition).find(
    (k) =>
      k.split('.').pop() === messageDefinition.type.name &&
      JSON.stringify(definition[k].type) === shape,
  );
  if (!name) throw new Error(`type ${messageDefinition.type.name} is not in the package definition`);
  return name;
}

function lowerCamel(name) {
  return name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
}

// ---- JSON -> proto-loader object (what grpc-js serializes with fromObject) ----
//
// proto-loader represents google.protobuf.Struct as the raw message ({fields: {k: Value}});
// given a plain object it silently encodes an empty Struct, so the JSON mapping of the
// well-known types is done here. The well-known types come from protobufjs's bundled
// JSON descriptors whose field names are lowerCamelCase (numberValue) even with
// keepCase, so Value's fields are looked up by number, not spelled out.

const VALUE_FIELD = {};
for (const field of messageType('google.protobuf.Value').descriptor.field) {
  VALUE_FIELD[field.number] = field.name;
}
const [NULL, NUMBER, STRING, BOOL, STRUCT, LIST] = [1, 2, 3, 4, 5, 6].map((n) => VALUE_FIELD[n]);

function valueToProto(value) {
  if (value === null) return { [NULL]: 'NULL_VALUE' };
  if (Array.isArray(value)) return { [LIST]: { values: value.map(valueToProto) } };
  switch (typeof value) {
    case 'number':
      return { [NUMBER]: value };
    case 'string':
      return { [STRING]: value };
    case 'boolean':
      return { [BOOL]: value };
    case 'object':
      return { [STRUCT]: structToProto(value) };
    default:
      throw new Error(`cannot put a ${typeof value} in a google.protobuf.Value`);
  }
}

function structToProto(object) {
  if (object === null || typeof object !== 'object' || Array.isArray(object)) {
    throw new Error('a google.protobuf.Struct must be a JSON object');
  }
  const fields = {};
  for (const [key, value] of Object.entries(object)) fields[key] = valueToProto(value);
  return { fields };
}

function timestampToProto(text) {
  const match = /^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  const millis = match ? Date.parse(`${match[1]}${match[3]}`) : NaN;
  if (Number.isNaN(millis)) throw new Error(`not an RFC 3339 timestamp: ${text}`);
  return { seconds: String(millis / 1000), nanos: Number((match[2] || '').padEnd(9, '0')) };
}

function toProto(typeName, json) {
  const { name, descriptor } = messageType(typeName);
  if (name === 'google.protobuf.Struct') return structToProto(json);
  if (name === 'google.protobuf.Value') return valueToProto(json);
  if (name === 'google.protobuf.ListValue') return { values: json.map(valueToProto) };
  if (name === 'google.protobuf.Timestamp') return timestampToProto(json);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${name} must be a JSON object`);
  }
  const out = {};
  for (const [key, value] of Object.entries(json)) {
    const field = descriptor.field.find((f) => f.name === key || lowerCamel(f.name) === key);
    if (!field) throw new Error(`${name} has no field ${key}`);
    if (value === null) continue;
    let converted = value;
    if (field.type === 'TYPE_MESSAGE') {
      const nested = fieldType(name, field);
      converted =
        field.label === 'LABEL_REPEATED'
          ? value.map((item) => toProto(nested, item))
          : toProto(nested, value);
    }
    out[field.name] = converted;
  }
  return out;
}

// ---- proto-loader object -> JSON ----

function valueFromProto(value) {
  if (!value) return null;
  if (value[STRUCT]) return structFromProto(value[STRUCT]);
  if (value[LIST]) return (value[LIST].values || []).map(valueFromProto);
  for (const key of [NUMBER, STRING, BOOL]) {
    if (value[key] !== undefined && value[key] !== null) return value[key];
  }
  return null;
}

function structFromProto(struct) {
  const out = {};
  for (const [key, value] of Object.entries((struct && struct.fields) || {})) {
    out[key] = valueFromProto(value);
  }
  return out;
}

function timestampFromProto(ts) {
  const seconds = Number(ts.seconds || 0);
  const nanos = Number(ts.nanos || 0);
  const base = new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, '');
  const fraction = nanos ? `.${String(nanos).padStart(9, '0').replace(/0+$/, '')}` : '';
  return `${base}${fraction}Z`;
}

function fromProto(typeName, object) {
  const { name, descriptor } = messageType(typeName);
  if (name === 'google.protobuf.Struct') return structFromProto(object);
  if (name === 'google.protobuf.Value') return valueFromProto(object);
  if (name === 'google.protobuf.ListValue') return (object.values || []).map(valueFromProto);
  if (name === 'google.protobuf.Timestamp') return timestampFromProto(object);
  const out = {};
  for (const field of descriptor.field) {
    const value = object[field.name];
    if (value === undefined || value === null) continue;
    if (field.type !== 'TYPE_MESSAGE') {
      out[field.name] = value;
      continue;
    }
    const nested = fieldType(name, field);
    out[field.name] =
      field.label === 'LABEL_REPEATED'
        ? value.map((item) => fromProto(nested, item))
        : fromProto(nested, value);
  }
  return out;
}

function main(argv) {
  if (argv.length < 2 || argv.length > 3) usage('expected 2 or 3 arguments');
  const [address, methodName, requestText = '{}'] = argv;
  const Service = grpc.loadPackageDefinition(definition).embedpipe.embedding.v1.EmbeddingService;
  const method = definition[SERVICE][methodName];
  if (!method) usage(`unknown method ${methodName}; known: ${Object.keys(definition[SERVICE]).join(', ')}`);

  let request;
  try {
    request = toProto(fullName(method.requestType), JSON.parse(requestText));
  } catch (err) {
    usage(`bad request JSON: ${err.message}`);
  }

  const client = new Service(address, grpc.credentials.createInsecure());
  const deadline = new Date(Date.now() + DEADLINE_MS);
  client[methodName](request, { deadline }, (err, response) => {
    if (err) {
      process.stdout.write(`${JSON.stringify({ code: err.code, details: err.details })}\n`);
      process.exitCode = 1;
    } else {
      process.stdout.write(`${JSON.stringify(fromProto(fullName(method.responseType), response))}\n`);
    }
    client.close();
  });
}

main(process.argv.slice(2));
