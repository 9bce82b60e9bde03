"""Modal screens: help, forms, an event's payload."""
