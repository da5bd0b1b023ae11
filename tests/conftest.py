import testenv  # noqa: F401 - sets the environment before any function module is imported
