"""The platform: app factory, configuration, database and tenant scope, auth, jobs, CLI."""
