"""Users, roles, web login and OAuth2 client-credentials for machine clients."""
