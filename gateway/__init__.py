"""The edge of the gateway: app factory, settings, auth, routes, stores and pages."""
