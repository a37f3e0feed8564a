"""Running cases in isolated worker processes: the parent-side launcher and the child-side worker."""
