"""The worker (DCF's "watcher"): the process that loads a function's Handler once and serves its calls,
over the gateway's framed link (`link`) or the DCF gRPC protocol. Kept lean: it imports no client,
notebook or gateway code, and grpc only for its gRPC face."""
