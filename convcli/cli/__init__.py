"""convcli's command line."""

from convcli.cli.app import app, main

__all__ = ["app", "main"]
