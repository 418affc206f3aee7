"""The gRPC clients that ship with trio-gitaly: `trio-gitaly ssh` and the hook entry point.

They are short-lived processes (one per git transport session or hook run), so they use
grpcio's synchronous API and keep their imports lean.
"""
