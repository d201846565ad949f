"""HTTP layer: validation, one service call per route, response shaping."""
