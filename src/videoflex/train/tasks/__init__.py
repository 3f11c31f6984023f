"""Training tasks: one file per model family, each a :class:`videoflex.train.task.Task` for the one loop."""
