"""One module per console page, each with its ``router`` (included by ``hub.console.app``)."""
