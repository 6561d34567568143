"""ParallelRun Functions: the core library shared by the Functions adapters, the local host and the CLI."""
