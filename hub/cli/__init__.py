"""The ``hub`` command line, without the commands that start the HTTP API (see ``hub.main``)."""

from hub.cli.root import app

__all__ = ["app"]
