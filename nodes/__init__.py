"""The services of the mesh; each is a NATS micro service started with `python -m nodes.<name>`."""
