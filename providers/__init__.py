"""Provider adapters: one module per upstream API behind one small interface."""
