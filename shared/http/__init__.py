"""The HTTP layer: request parsing, problem details, the routes' outcomes (``api``)
and the OpenAPI document (``openapi``), on top of the pipeline services."""
