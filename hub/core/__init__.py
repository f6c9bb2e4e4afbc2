"""The hub's pure domain: models, event matching, templating. No I/O happens here."""
