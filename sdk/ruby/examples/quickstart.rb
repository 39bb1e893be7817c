# frozen_string_literal: true

# The SDK end to end: make a collection, stream a document into it, follow its task to the
# end, search it, embed a text, and show that another tenant's key sees none of it.
#
#   EMBEDPIPE_API_KEY=... ruby -I lib examples/quickstart.rb
#
# Settings (environment): EMBEDPIPE_INGESTION_GRPC (default 127.0.0.1:50061),
# EMBEDPIPE_EMBEDDING_GRPC (default 127.0.0.1:50051), EMBEDPIPE_API_KEY (required),
# EMBEDPIPE_OTHER_API_KEY (another tenant's, optional), EMBEDPIPE_COLLECTION.
# Prints one JSON line of what happened.

require 'json'
require 'embedpipe'

V1 = Embedpipe::Ingestion::V1
HANDBOOK = <<~MARKDOWN
  # Leave

  Staff get 25 days of paid vacation a year, plus public holidays.

  # Equipment

  The company provides a laptop and a monitor. Broken equipment is replaced within a week.
MARKDOWN

ingestion_target = ENV.fetch('EMBEDPIPE_INGESTION_GRPC', '127.0.0.1:50061')
embedding_target = ENV.fetch('EMBEDPIPE_EMBEDDING_GRPC', '127.0.0.1:50051')
api_key = ENV.fetch('EMBEDPIPE_API_KEY')
other_key = ENV.fetch('EMBEDPIPE_OTHER_API_KEY', nil)
collection_id = ENV.fetch('EMBEDPIPE_COLLECTION', 'sdk-quickstart')

# The status code a call failed with (e.g. "NOT_FOUND"), or "OK".
def outcome
  yield
  'OK'
rescue GRPC::BadStatus => e
  GRPC::Core::StatusCodes.constants.find { |name| GRPC::Core::StatusCodes.const_get(name) == e.code }.to_s
end

ingestion = Embedpipe.ingestion(ingestion_target)
key = Embedpipe.key_metadata(api_key)

created = outcome do
  ingestion.create_collection(V1::CreateCollectionRequest.new(collection_id: collection_id), metadata: key)
end
raise "create_collection: #{created}" unless %w[OK ALREADY_EXISTS].include?(created)

# The upload stream: the header first, then the file in small parts.
header = V1::DocumentHeader.new(
  collection_id: collection_id, document_id: 'handbook',
  filename: 'handbook.md', content_type: 'text/markdown'
)
parts = [V1::UploadDocumentRequest.new(header: header)]
HANDBOOK.b.scan(/.{1,64}/mn).each { |bytes| parts << V1::UploadDocumentRequest.new(file: bytes) }
accepted = ingestion.upload_document(parts, metadata: key)

statuses = ingestion.watch_task(V1::WatchTaskRequest.new(task_id: accepted.task_id), metadata: key)
                    .map { |reply| reply.event.status }

found = ingestion.search(
  V1::SearchRequest.new(collection_id: collection_id, query: 'How many vacation days do staff get?', top_k: 3),
  metadata: key
)
top = found.results.first
document = ingestion.get_document(
  V1::GetDocumentRequest.new(collection_id: collection_id, document_id: top.document_id), metadata: key
)

embedding = Embedpipe.embedding(embedding_target)
embedded = embedding.embed(Embedpipe::Embedding::V1::EmbedRequest.new(inputs: ['paid vacation']), metadata: key)

other_tenant = {}
if other_key
  other = Embedpipe.key_metadata(other_key)
  other_tenant['getCollection'] = outcome do
    ingestion.get_collection(V1::GetCollectionRequest.new(collection_id: collection_id), metadata: other)
  end
  other_tenant['search'] = outcome do
    ingestion.search(V1::SearchRequest.new(collection_id: collection_id, query: 'vacation'), metadata: other)
  end
  other_tenant['watchTask'] = outcome do
    ingestion.watch_task(V1::WatchTaskRequest.new(task_id: accepted.task_id), metadata: other).each { nil }
  end
end

puts JSON.generate(
  taskId: accepted.task_id,
  statuses: statuses,
  topDocument: top.document_id,
  topText: top.text,
  documentStatus: document.document.status,
  embeddingDimensions: embedded.embeddings.first.values.length,
  otherTenant: other_tenant
)
