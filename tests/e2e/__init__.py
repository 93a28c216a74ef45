"""End-to-end tests of `akidb-embed serve`: the real binary, real models, real clients."""
