"""Live streams: lifecycle, event logs, cancellation, limits and the records handed to the ledger."""
