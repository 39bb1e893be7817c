# frozen_string_literal: true

# embedpipe's Ruby SDK: gRPC stubs of IngestionService and EmbeddingService, with messages
# generated from the protos (lib/embedpipe/*/v1, by protoc and grpc_ruby_plugin).
#
# Every call carries the API key, which names the caller's tenant:
#
#   ingestion = Embedpipe.ingestion("127.0.0.1:50061")
#   ingestion.list_collections(Embedpipe::Ingestion::V1::ListCollectionsRequest.new,
#                              metadata: Embedpipe.key_metadata(api_key))
$LOAD_PATH.unshift(__dir__) unless $LOAD_PATH.include?(__dir__)

require 'grpc'
require 'embedpipe/embedding/v1/embedding_service_services_pb'
require 'embedpipe/ingestion/v1/ingestion_service_services_pb'

module Embedpipe
  # A stub of IngestionService at `target` ("host:port"), over plaintext gRPC by default.
  def self.ingestion(target, credentials = :this_channel_is_insecure)
    Ingestion::V1::IngestionService::Stub.new(target, credentials)
  end

  # A stub of EmbeddingService at `target`.
  def self.embedding(target, credentials = :this_channel_is_insecure)
    Embedding::V1::EmbeddingService::Stub.new(target, credentials)
  end

  # The metadata that carries an API key.
  def self.key_metadata(api_key)
    { 'authorization' => "Bearer #{api_key}" }
  end
end
