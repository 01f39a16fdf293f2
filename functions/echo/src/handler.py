class Handler:
    def __init__(self):
        pass

    def __call__(self, req):
        return req.input
