"""git's pack protocols served from a repository, for any byte transport.

The gRPC services (SSHService, SmartHTTPService) and the HTTP gateway drive the same
functions here: each takes the client's bytes as an async iterator and hands git's
output to async sinks, so a new transport (a sidechannel) is one more adapter. Bytes
stream through with backpressure: a slow client slows git down, nothing piles up.
"""
