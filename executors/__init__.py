"""Where work runs: a site YAML turned into a `parsl.Config` with one executor per task kind."""
