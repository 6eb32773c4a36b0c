class RoutingError(ValueError):
    """A producer's call was invalid (no user, unknown role, type or priority,
    empty message, bad buttons). Raised before anything is written."""
