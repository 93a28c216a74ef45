"""Shared settings of the end-to-end tests (run by `cargo xtask ci` with the project's .venv)."""
