"""Public functions: validate, normalise the layout, call a kernel, shape the result."""
