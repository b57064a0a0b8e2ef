"""Developer tools run from a checkout (``python -m gateway.devtools.<tool>``)."""
