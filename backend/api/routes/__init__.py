"""One router per resource; each route validates, calls one service method and shapes the answer."""
