"""A PostgREST-compatible test endpoint over the real Postgres (see server.py)."""
