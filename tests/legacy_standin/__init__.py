"""Legacy v1 stand-in service (test tooling) and its tests."""
