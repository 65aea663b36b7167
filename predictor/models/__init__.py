"""Loading and running models: the registry adapter, the compiled forest, micro-batching, the local cache."""
