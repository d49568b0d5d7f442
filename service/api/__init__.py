"""The HTTP surface: routes, schemas, upload reading, dependencies, middleware, error handlers."""
