"""``hub dev``: the whole hub on a laptop, with an optional demo."""
