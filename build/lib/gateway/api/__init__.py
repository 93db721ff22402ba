"""The HTTP edge: the app factory, the routes (one module per area), their dependencies, body reading,
the one error-to-HTTP mapping and the OpenAPI document. Nothing below this package knows HTTP."""
