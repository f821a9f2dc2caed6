"""Built-in task definitions (YAML), shipped inside the package as harness.tasks."""
