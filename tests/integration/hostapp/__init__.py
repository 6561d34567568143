"""A small function app the local host's tests run: queue, HTTP and blob triggers."""
