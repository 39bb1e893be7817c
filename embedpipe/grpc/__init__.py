"""What every gRPC server of ours shares: errors mapped once, and who may call."""
