class Handler:
    def __init__(self):
        # Runs once when the function starts: load models and data here.
        pass

    def __call__(self, req):
        # Runs for every request. req.input holds the request's raw bytes.
        # Return str, bytes or a JSON-serialisable object (a generator streams several replies).
        return req.input
