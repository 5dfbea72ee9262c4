"""Developer tools shared by the tests and the benchmark (not used by the pipeline itself)."""
