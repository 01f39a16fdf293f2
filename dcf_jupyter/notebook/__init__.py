"""The kernel side: the magics, the session (its gateway, an embedded one if none answers), rich display and
progress, and the callable a deployed function becomes. Imports the client, never the gateway server."""
