"""How processes talk over the mesh (requests, stream and bucket setup, stream readers) and retry its failures."""
