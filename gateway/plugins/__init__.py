"""Protocol plugins: each folder holds one protocol's config model, source, simulator and tests."""
