"""What a function is: its config.yaml spec, source bundle, requirements (and their per-user cache), runtimes,
the scaffold of a new one, and the checks build and deploy run. Shared by every tier."""
