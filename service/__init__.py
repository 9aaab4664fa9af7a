"""carbon-points: the web service, its database layer and its command line."""
