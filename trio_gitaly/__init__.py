"""trio-gitaly: a Git storage server speaking Gitaly's gRPC protocol, on Trio."""

__version__ = "0.1.0"
