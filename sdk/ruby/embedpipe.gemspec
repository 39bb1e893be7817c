# frozen_string_literal: true

Gem::Specification.new do |spec|
  spec.name = 'embedpipe'
  spec.version = '0.1.0'
  spec.summary = "Ruby client of embedpipe's IngestionService and EmbeddingService (gRPC)"
  spec.description = 'gRPC stubs and messages generated from the embedpipe protos, and a ' \
                     'small helper that carries the API key.'
  spec.license = 'Apache-2.0'
  spec.authors = ['embedpipe']
  spec.required_ruby_version = '>= 3.0'
  spec.files = Dir['lib/**/*.rb']
  spec.require_paths = ['lib']
  spec.add_dependency 'google-protobuf', '>= 3.21', '< 4'
  spec.add_dependency 'grpc', '>= 1.51', '< 2'
end
