"""HTTP, SSE and WebSocket routes, one module per resource."""
