"""A module that fails while being imported: `osmium serve` must report it in one line."""

raise RuntimeError("broken on purpose by the osmium integration tests")
