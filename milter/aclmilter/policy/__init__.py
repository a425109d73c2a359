"""Policy loading: YAML -> validated, frozen model with file:line:column on every node."""
