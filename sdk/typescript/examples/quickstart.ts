/**
 * The SDK end to end: make a collection, stream a document into it, follow its task to the
 * end, search it, embed a text, and show that another tenant's key sees none of it.
 *
 *   EMBEDPIPE_API_KEY=... node dist/examples/quickstart.js
 *
 * Settings (environment): EMBEDPIPE_INGESTION_GRPC (default http://127.0.0.1:50061),
 * EMBEDPIPE_EMBEDDING_GRPC (default http://127.0.0.1:50051), EMBEDPIPE_API_KEY (required),
 * EMBEDPIPE_OTHER_API_KEY (another tenant's, optional), EMBEDPIPE_COLLECTION.
 * Prints one JSON line of what happened.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

import {
  embeddingClient,
  ingestionClient,
  UploadDocumentRequestSchema,
  type UploadDocumentRequest,
} from "../src/index.js";

const HANDBOOK = `# Leave

Staff get 25 days of paid vacation a year, plus public holidays.

# Equipment

The company provides a laptop and a monitor. Broken equipment is replaced within a week.
`;

const ingestionUrl = process.env.EMBEDPIPE_INGESTION_GRPC ?? "http://127.0.0.1:50061";
const embeddingUrl = process.env.EMBEDPIPE_EMBEDDING_GRPC ?? "http://127.0.0.1:50051";
const apiKey = process.env.EMBEDPIPE_API_KEY;
const otherKey = process.env.EMBEDPIPE_OTHER_API_KEY;
const collectionId = process.env.EMBEDPIPE_COLLECTION ?? "sdk-quickstart";

/** The upload stream: the header first, then the file in small parts. */
async function* uploadParts(text: string): AsyncIterable<UploadDocumentRequest> {
  yield create(UploadDocumentRequestSchema, {
    part: {
      case: "header",
      value: {
        collectionId,
        documentId: "handbook",
        filename: "handbook.md",
        contentType: "text/markdown",
      },
    },
  });
  const bytes = new TextEncoder().encode(text);
  for (let start = 0; start < bytes.length; start += 64) {
    const part = bytes.subarray(start, start + 64);
    yield create(UploadDocumentRequestSchema, { part: { case: "file", value: part } });
  }
}

/** The gRPC status a call ended with, by its name in the gRPC spec ("NOT_FOUND", "OK"). */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return "OK";
  } catch (error) {
    const name = Code[ConnectError.from(error).code]; // e.g. NotFound
    return name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  }
}

async function main(): Promise<void> {
  if (!apiKey) throw new Error("set EMBEDPIPE_API_KEY");
  const ingestion = ingestionClient({ baseUrl: ingestionUrl, apiKey });
  const created = await outcome(() => ingestion.createCollection({ collectionId }));
  if (created !== "OK" && created !== "ALREADY_EXISTS") {
    throw new Error(`createCollection: ${created}`);
  }

  const accepted = await ingestion.uploadDocument(uploadParts(HANDBOOK));
  const statuses: string[] = [];
  for await (const reply of ingestion.watchTask({ taskId: accepted.taskId })) {
    statuses.push(reply.event?.status ?? "");
  }

  const found = await ingestion.search({
    collectionId,
    query: "How many vacation days do staff get?",
    topK: 3,
  });
  const top = found.results[0];
  const document = await ingestion.getDocument({ collectionId, documentId: top.documentId });

  const embedding = embeddingClient({ baseUrl: embeddingUrl, apiKey });
  const embedded = await embedding.embed({ inputs: ["paid vacation"] });

  const otherTenant: Record<string, string> = {};
  if (otherKey) {
    const other = ingestionClient({ baseUrl: ingestionUrl, apiKey: otherKey });
    otherTenant.getCollection = await outcome(() => other.getCollection({ collectionId }));
    otherTenant.search = await outcome(() => other.search({ collectionId, query: "vacation" }));
    otherTenant.watchTask = await outcome(async () => {
      for await (const _ of other.watchTask({ taskId: accepted.taskId })) {
        // another tenant's task must not stream
      }
    });
  }

  console.log(
    JSON.stringify({
      taskId: accepted.taskId,
      statuses,
      topDocument: top.documentId,
      topText: top.text,
      documentStatus: document.document?.status,
      embeddingDimensions: embedded.embeddings[0].values.length,
      otherTenant,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
