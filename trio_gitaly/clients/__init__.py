"""The gRPC clients that ship with trio-gitaly: `trio-gitaly ssh` and the hook entry point.

They are short-lived processes (one per git transport session or hook run) that keep
their imports lean: the ssh helper relays its call in one thread (`relay_call`), the
hook entry point uses grpcio's synchronous API.
"""
