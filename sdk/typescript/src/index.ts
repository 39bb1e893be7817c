/**
 * embedpipe's TypeScript SDK: clients of IngestionService and EmbeddingService over gRPC
 * (Connect for Node), with messages generated from the protos (src/gen, by protoc-gen-es).
 *
 * Every call carries the API key, which names the caller's tenant.
 */
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { EmbeddingService } from "./gen/embedpipe/embedding/v1/embedding_service_pb.js";
import { IngestionService } from "./gen/embedpipe/ingestion/v1/ingestion_service_pb.js";

export * from "./gen/embedpipe/embedding/v1/embedding_service_pb.js";
export * from "./gen/embedpipe/ingestion/v1/ingestion_service_pb.js";
export * from "./gen/embedpipe/ingestion/v1/resources_pb.js";

export interface ClientOptions {
  /** The server, e.g. "http://127.0.0.1:50061" (ingestion) or ":50051" (embedding). */
  baseUrl: string;
  /** The API key; it decides the tenant of every call. */
  apiKey?: string;
}

/** Sends the API key as `authorization: Bearer <key>` metadata. */
function apiKeyInterceptor(apiKey: string): Interceptor {
  return (next) => async (request) => {
    request.header.set("authorization", `Bearer ${apiKey}`);
    return next(request);
  };
}

function transport(options: ClientOptions) {
  return createGrpcTransport({
    baseUrl: options.baseUrl,
    interceptors: options.apiKey ? [apiKeyInterceptor(options.apiKey)] : [],
  });
}

/** Collections, uploads, tasks (with WatchTask) and search. */
export function ingestionClient(options: ClientOptions): Client<typeof IngestionService> {
  return createClient(IngestionService, transport(options));
}

/** Embed texts now, or queue embedding jobs. */
export function embeddingClient(options: ClientOptions): Client<typeof EmbeddingService> {
  return createClient(EmbeddingService, transport(options));
}
