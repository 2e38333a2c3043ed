"""The one exception fk_core raises for a run that cannot go on; hosts show its message to the user."""


class FKError(ValueError):
    """A run that cannot continue (e.g. every particle's reward was NaN). The message says why."""
