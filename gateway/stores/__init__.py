"""Where the gateway keeps data: one interface, chosen by settings."""
