"""A Ray cluster from outside: ``jobs`` submits sweeps as Ray jobs and looks after them
(Ray's Jobs SDK, the ``cluster`` extra, imported when a command needs it)."""
